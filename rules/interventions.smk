# Interventions on a trained SAE's features in the model: steering experiments (generation with a
# feature added or clamped at the hook, config `steering:`) and ablation effects (the loss change
# per token of top examples when a feature is removed, config `ablation:`). Both run the causal
# LM, so both are GPU rules (one at a time under --resources gpu=1, after the SAE's eval); the
# dashboard waits for them, so they go first, on one thread each: waiting for two free cores
# cost more than the second thread saves.


rule steer:
    input:
        unpack(steering_inputs),
    output:
        table=PATHS["steering"],
    params:
        experiment=lambda wildcards: STEERING[wildcards.experiment],
        adapter=ADAPTER,
        model_dtype=config["model"]["dtype"],
        prepend_bos=config["model"]["prepend_bos"],
    wildcard_constraints:
        experiment=names_pattern(STEERING),
    priority: 1
    threads: 1
    resources:
        gpu=1,
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
    log:
        log_path("steer", "{sae}/{experiment}"),
    benchmark:
        benchmark_path("steer", "{sae}/{experiment}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/steer.py"


rule ablation:
    input:
        weights=PATHS["sae_weights"],
        cfg=PATHS["sae_cfg"],
        top_examples=path("analysis_table", table="top_examples"),
        feature_stats=path("analysis_table", table="feature_stats"),
        labels=path("analysis_table", table="labels"),
        tokens=PATHS["tokens"],
        tokenizer=TOKENIZER_DIR,
        **MODEL_INPUTS,
    output:
        effects=PATHS["ablation"],
        logits=PATHS["ablation_logits"],
    params:
        # batch_size changes how fast, not what: read from config at run time.
        settings={key: config["ablation"][key] for key in ("max_features", "examples", "top_logits")},
        context=config["analysis"]["context"],
        experiments=lambda wildcards: steering_of(wildcards.sae),
        adapter=ADAPTER,
        model_dtype=config["model"]["dtype"],
    priority: 1
    threads: 1
    resources:
        gpu=1,
        mem_mb=per_attempt(6000),
        runtime=per_attempt(60),
    log:
        log_path("ablation", "{sae}"),
    benchmark:
        benchmark_path("ablation", "{sae}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/ablation.py"
