# Tokens -> chunk plan -> dense activation chunks per layer (Zarr) -> mean vector per layer.


checkpoint plan_chunks:
    input:
        tokens=PATHS["tokens"],
    output:
        plan=PATHS["plan"],
    params:
        tokens_per_chunk=config["activations"]["tokens_per_chunk"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        log_path("plan_chunks"),
    benchmark:
        benchmark_path("plan_chunks")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/plan_chunks.py"


rule capture_activations:
    input:
        tokens=PATHS["tokens"],
        plan=PATHS["plan"],
    output:
        acts=directory(PATHS["acts"]),
    params:
        model_path=MODEL_PATH,
        model_dtype=config["model"]["dtype"],
        dtype=config["activations"]["dtype"],
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    log:
        log_path("capture_activations", "layer-{layer}/{chunk}"),
    benchmark:
        benchmark_path("capture_activations", "layer-{layer}/{chunk}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/capture.py"


rule layer_mean:
    input:
        chunks=layer_chunks,
    output:
        mean=PATHS["mean"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        log_path("layer_mean", "layer-{layer}"),
    benchmark:
        benchmark_path("layer_mean", "layer-{layer}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/layer_mean.py"
