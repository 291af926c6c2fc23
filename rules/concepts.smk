# Concept detection against the dense baseline: per hook, every raw dimension (in both signs)
# scored as a detector the way the SAE's units are; per SAE, the best of each per label.


rule dense_detection:
    input:
        chunks=lambda wildcards: hook_chunks(wildcards.hook),
        tokens=PATHS["tokens"],
        documents=PATHS["documents"],
    output:
        detection=PATHS["dense_detection"],
    params:
        detection_percentile=config["analysis"]["detection_percentile"],
        memory_mb=config["concepts"]["dense_memory_mb"],
    threads: 1
    resources:
        mem_mb=per_attempt(config["concepts"]["dense_memory_mb"] + 1000),
        runtime=per_attempt(60),
    log:
        log_path("dense_detection", "{hook}"),
    benchmark:
        benchmark_path("dense_detection", "{hook}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/dense_detection.py"


rule concepts:
    input:
        detection=PATHS["detection"],
        dense_detection=lambda wildcards: path("dense_detection", hook=SAE_HOOK[wildcards.sae]),
    output:
        concepts=PATHS["concepts"],
    params:
        top_n=config["concepts"]["top_n"],
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    log:
        log_path("concepts", "{sae}"),
    benchmark:
        benchmark_path("concepts", "{sae}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/concepts.py"
