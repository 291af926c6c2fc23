# Feature store -> per-feature analyses. Each SAE's features are cut into analysis.feature_shards
# shards; per shard one job computes the activation tables' pieces, one the influences (SAEs on a
# hidden_states hook) and one the neighbours, and gather jobs concatenate the pieces. Each job's
# params hold only the settings it uses, so changing one setting reruns only its tables.


# Influences are off the critical path (only the dashboard waits for them): lower priority than
# the store and the analyses every later job needs.
rule unembedding:
    input:
        model=MODEL_DIR,
    output:
        W_U=PATHS["unembedding"],
    priority: -1
    threads: 1
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(30),
    log:
        log_path("unembedding"),
    benchmark:
        benchmark_path("unembedding")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/unembedding.py"


rule analyse_feature_shard:
    input:
        by_feature=PATHS["by_feature"],
        tokens=PATHS["tokens"],
        documents=PATHS["documents"],
        idf=PATHS["idf"],
    output:
        **{piece: path("shard_piece", table=piece) for piece in ACTIVATION_PIECES},
    params:
        analysis={key: config["analysis"][key] for key in ACTIVATION_SETTINGS},
        n_shards=lambda wildcards: n_shards(wildcards.sae),
    threads: 1
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(60),
    log:
        log_path("analyse_feature_shard", "{sae}/shard-{shard}"),
    benchmark:
        benchmark_path("analyse_feature_shard", "{sae}/shard-{shard}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/analyse_feature_shard.py"


rule influence_shard:
    input:
        weights=PATHS["sae_weights"],
        W_U=PATHS["unembedding"],
        tokenizer=TOKENIZER_DIR,
    output:
        influences=path("shard_piece", table=INFLUENCE_PIECE),
    priority: -1
    params:
        n_shards=lambda wildcards: n_shards(wildcards.sae),
        influence_k=config["analysis"]["influence_k"],
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
    log:
        log_path("influence_shard", "{sae}/shard-{shard}"),
    benchmark:
        benchmark_path("influence_shard", "{sae}/shard-{shard}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/influence_shard.py"


# Co-activation reads every CSR chunk; they are params, not inputs, because by_feature is built
# from all of them (so they exist, and a changed chunk reruns this through it): as inputs, 64
# shards × 1,000 chunks would be 64,000 edges for Snakemake to resolve while it plans.
rule neighbour_shard:
    input:
        weights=PATHS["sae_weights"],
        by_feature=PATHS["by_feature"],
    output:
        **{piece: path("shard_piece", table=piece) for piece in NEIGHBOUR_PIECES},
    params:
        chunks=sae_feature_chunks,
        n_shards=lambda wildcards: n_shards(wildcards.sae),
        neighbours=config["analysis"]["neighbours"],
    threads: 1
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(60),
    log:
        log_path("neighbour_shard", "{sae}/shard-{shard}"),
    benchmark:
        benchmark_path("neighbour_shard", "{sae}/shard-{shard}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/neighbour_shard.py"


rule gather_table:
    wildcard_constraints:
        table="|".join([*ACTIVATION_TABLES, INFLUENCE_PIECE]),
    input:
        pieces=lambda wildcards: shard_pieces(wildcards.table)(wildcards),
    output:
        table=PATHS["analysis_table"],
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(10),
    log:
        log_path("gather_table", "{sae}/{table}"),
    benchmark:
        benchmark_path("gather_table", "{sae}/{table}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/gather_table.py"


rule gather_neighbours:
    input:
        **{piece: shard_pieces(piece) for piece in NEIGHBOUR_PIECES},
    output:
        neighbours=PATHS["neighbours"],
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(10),
    log:
        log_path("gather_neighbours", "{sae}"),
    benchmark:
        benchmark_path("gather_neighbours", "{sae}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/gather_neighbours.py"


# The record of the settings the analyses of this SAE used (analysis/params.json), written
# once the SAE exists, so a run stopped before training leaves none.
rule analysis_params:
    input:
        cfg=PATHS["sae_cfg"],
    output:
        params=PATHS["analysis_params"],
    params:
        analysis={key: config["analysis"][key] for key in RECORDED_SETTINGS},
    threads: 1
    resources:
        mem_mb=per_attempt(500),
        runtime=per_attempt(5),
    log:
        log_path("analysis_params", "{sae}"),
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/analysis_params.py"
