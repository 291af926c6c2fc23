# Activation chunks -> trained SAEs (one job per configured SAE) -> metrics of the sweep.


rule train_sae:
    input:
        chunks=sae_layer_chunks,
        plan=PATHS["plan"],
        tokens=PATHS["tokens"],
    output:
        weights=PATHS["sae_weights"],
        cfg=PATHS["sae_cfg"],
        training_log=PATHS["training_log"],
        eval=PATHS["eval"],
    params:
        settings=lambda wildcards: config["saes"][wildcards.sae],
        model_path=MODEL_PATH,
        checkpoint=lambda wildcards: PATHS["checkpoint"].format(sae=wildcards.sae),
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    log:
        log_path("train_sae", "{sae}"),
    benchmark:
        benchmark_path("train_sae", "{sae}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/train_sae.py"


rule gather_metrics:
    input:
        evals=expand(PATHS["eval"], sae=list(config["saes"])),
        cfgs=expand(PATHS["sae_cfg"], sae=list(config["saes"])),
    output:
        metrics=PATHS["metrics"],
    params:
        names=list(config["saes"]),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    log:
        log_path("gather_metrics"),
    benchmark:
        benchmark_path("gather_metrics")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/gather_metrics.py"
