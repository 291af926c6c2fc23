# Tokens -> chunk plan -> dense activation chunks of every hook point (Zarr) -> mean vector per hook.


rule plan_chunks:
    input:
        tokens=PATHS["tokens"],
    output:
        plan=PATHS["plan"],
    params:
        n_chunks=N_CHUNKS,
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    log:
        log_path("plan_chunks"),
    benchmark:
        benchmark_path("plan_chunks")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/plan_chunks.py"


# One forward pass per chunk writes the chunk of every hook, running the model only as far as
# the deepest hook needs.
rule capture_activations:
    input:
        tokens=PATHS["tokens"],
        plan=PATHS["plan"],
        **MODEL_INPUTS,
    output:
        # One Zarr directory per hook, in the order of params.hooks (a named list cannot carry
        # directory flags, so they are the rule's positional outputs).
        [directory(path("acts", hook=hook)) for hook in HOOKS],
    params:
        hooks=HOOKS,
        model_name=MODEL_NAME,
        model_dtype=config["model"]["dtype"],
        dtype=config["activations"]["dtype"],
        adapter=ADAPTER,
    threads: 2
    resources:
        gpu=1,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(120),
    log:
        log_path("capture_activations", "{chunk}"),
    benchmark:
        benchmark_path("capture_activations", "{chunk}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/capture.py"


rule hook_mean:
    input:
        chunks=lambda wildcards: hook_chunks(wildcards.hook),
    output:
        mean=PATHS["mean"],
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    log:
        log_path("hook_mean", "{hook}"),
    benchmark:
        benchmark_path("hook_mean", "{hook}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/hook_mean.py"
