# Feature stats -> kept units -> filtered store, kept units' thresholds, and concept detection.


# Pruned on the calibration split's statistics, like the thresholds (README "Concepts").
rule unit_map:
    input:
        stats=path("analysis_table", table="calibration_stats"),
    output:
        unit_map=PATHS["unit_map"],
    params:
        criteria=config["units"],
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(5),
    log:
        log_path("unit_map", "{sae}"),
    benchmark:
        benchmark_path("unit_map", "{sae}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/unit_map.py"


rule filter_units:
    input:
        features=PATHS["features"],
        unit_map=PATHS["unit_map"],
    output:
        filtered=directory(PATHS["filtered"]),
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    log:
        log_path("filter_units", "{sae}/{chunk}"),
    benchmark:
        benchmark_path("filter_units", "{sae}/{chunk}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/filter_units.py"


rule thresholds:
    input:
        pieces=shard_pieces("percentiles"),
        unit_map=PATHS["unit_map"],
    output:
        thresholds=PATHS["thresholds"],
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    log:
        log_path("thresholds", "{sae}"),
    benchmark:
        benchmark_path("thresholds", "{sae}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/thresholds.py"


rule detection:
    input:
        pieces=shard_pieces("detection"),
        unit_map=PATHS["unit_map"],
    output:
        detection=PATHS["detection"],
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    log:
        log_path("detection", "{sae}"),
    benchmark:
        benchmark_path("detection", "{sae}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/detection.py"
