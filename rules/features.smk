# Trained SAE + activation chunks -> sparse (CSR) feature chunks -> feature-major transpose.


rule encode_features:
    input:
        weights=PATHS["sae_weights"],
        cfg=PATHS["sae_cfg"],
        acts=sae_hook_chunk,
    output:
        features=directory(PATHS["features"]),
    params:
        dtype=config["features"]["dtype"],
    # Ahead of eval and the weight-only analyses: every analysis waits for the whole store, and
    # GPU jobs run one at a time, so eval then overlaps the analyses instead of delaying them.
    priority: 2
    threads: 2
    resources:
        gpu=1,
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
    log:
        log_path("encode_features", "{sae}/{chunk}"),
    benchmark:
        benchmark_path("encode_features", "{sae}/{chunk}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/encode_features.py"


rule transpose_features:
    input:
        chunks=sae_feature_chunks,
        cfg=PATHS["sae_cfg"],
    output:
        by_feature=directory(PATHS["by_feature"]),
    params:
        max_entries=config["features"]["transpose_max_entries"],
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
    log:
        log_path("transpose_features", "{sae}"),
    benchmark:
        benchmark_path("transpose_features", "{sae}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/transpose_features.py"
