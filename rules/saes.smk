# Activation chunks of each SAE's hook -> trained SAEs (one job per configured SAE), or a
# pretrained SAE imported from its SAELens folder -> held-out eval -> sweep metrics.


rule train_sae:
    input:
        chunks=sae_training_chunks,
        tokens=PATHS["tokens"],
    output:
        weights=PATHS["sae_weights"],
        cfg=PATHS["sae_cfg"],
        training_log=PATHS["training_log"],
    params:
        settings=lambda wildcards: config["saes"][wildcards.sae],
        hook=lambda wildcards: SAE_HOOK[wildcards.sae],
        hook_spec=lambda wildcards: HOOKS[SAE_HOOK[wildcards.sae]],
        model_name=MODEL_NAME,
        checkpoint=lambda wildcards: PATHS["checkpoint"].format(sae=wildcards.sae),
    wildcard_constraints:
        sae=names_pattern(sae for sae in config["saes"] if sae not in PRETRAINED),
    priority: 2  # everything after it waits for it
    threads: 2
    resources:
        gpu=1,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(240),
    log:
        log_path("train_sae", "{sae}"),
    benchmark:
        benchmark_path("train_sae", "{sae}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/train_sae.py"


rule import_pretrained:
    input:
        folder=lambda wildcards: PRETRAINED[wildcards.sae],
    output:
        weights=PATHS["sae_weights"],
        cfg=PATHS["sae_cfg"],
        training_log=PATHS["training_log"],
    params:
        hook=lambda wildcards: SAE_HOOK[wildcards.sae],
        hook_spec=lambda wildcards: HOOKS[SAE_HOOK[wildcards.sae]],
        hook_width=lambda wildcards: HOOK_WIDTHS[SAE_HOOK[wildcards.sae]],
        model_name=MODEL_NAME,
    wildcard_constraints:
        sae=names_pattern(PRETRAINED),
    priority: 2
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(10),
    log:
        log_path("import_pretrained", "{sae}"),
    benchmark:
        benchmark_path("import_pretrained", "{sae}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/import_pretrained.py"


rule evaluate_sae:
    input:
        weights=PATHS["sae_weights"],
        cfg=PATHS["sae_cfg"],
        holdout=sae_holdout_chunk,
        plan=PATHS["plan"],
        tokens=PATHS["tokens"],
        **MODEL_INPUTS,
    output:
        eval=PATHS["eval"],
    params:
        holdout_chunk=HOLDOUT_CHUNK_ID,
        adapter=ADAPTER,
        ce_sequences=config["eval"]["ce_sequences"],
    # Right after the store's chunks, on one core: eval then runs beside the analyses (the
    # dashboard needs both) instead of waiting for a second free core.
    priority: 1
    threads: 1
    resources:
        gpu=1,
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
    log:
        log_path("evaluate_sae", "{sae}"),
    benchmark:
        benchmark_path("evaluate_sae", "{sae}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/evaluate_sae.py"


rule gather_metrics:
    input:
        evals=expand(PATHS["eval"], sae=list(config["saes"])),
        cfgs=expand(PATHS["sae_cfg"], sae=list(config["saes"])),
    output:
        metrics=PATHS["metrics"],
        table=report(PATHS["metrics_table"], caption="../report/metrics.rst", category="Metrics"),
    params:
        names=list(config["saes"]),
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(5),
    log:
        log_path("gather_metrics"),
    benchmark:
        benchmark_path("gather_metrics")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/gather_metrics.py"


rule training_curves:
    input:
        log=PATHS["training_log"],
    output:
        svg=report(PATHS["training_curves"], caption="../report/training_curves.rst", category="Training",
                   labels={"SAE": "{sae}"}),
    threads: 1
    resources:
        mem_mb=per_attempt(500),
        runtime=per_attempt(5),
    log:
        log_path("training_curves", "{sae}"),
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/training_curves.py"
