# Feature store -> per-feature analyses. Each SAE's features are cut into analysis.feature_shards
# shards; one job per shard computes every table's piece, and gather jobs concatenate them.


rule unembedding:
    output:
        W_U=PATHS["unembedding"],
    params:
        model_path=MODEL_PATH,
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
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
        **{piece: PATHS["shard_piece"].replace("{table}", piece) for piece in ACTIVATION_PIECES},
    params:
        analysis=config["analysis"],
        n_shards=lambda wildcards: n_shards(wildcards.sae),
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        log_path("analyse_feature_shard", "{sae}/shard-{shard}"),
    benchmark:
        benchmark_path("analyse_feature_shard", "{sae}/shard-{shard}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/analyse_feature_shard.py"


rule decoder_feature_shard:
    input:
        weights=PATHS["sae_weights"],
        W_U=PATHS["unembedding"],
        by_feature=PATHS["by_feature"],
        chunks=sae_feature_chunks,
    output:
        **{piece: PATHS["shard_piece"].replace("{table}", piece) for piece in DECODER_PIECES},
    params:
        model_path=MODEL_PATH,
        n_shards=lambda wildcards: n_shards(wildcards.sae),
        influence_k=config["analysis"]["influence_k"],
        neighbours=config["analysis"]["neighbours"],
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        log_path("decoder_feature_shard", "{sae}/shard-{shard}"),
    benchmark:
        benchmark_path("decoder_feature_shard", "{sae}/shard-{shard}")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/decoder_feature_shard.py"


rule gather_analysis:
    input:
        **{piece: shard_pieces(piece) for piece in GATHERED_PIECES},
    output:
        **{table: PATHS["analysis_table"].replace("{table}", table) for table in GATHERED_TABLES},
        neighbours=PATHS["neighbours"],
        params=PATHS["analysis_params"],
    params:
        analysis=config["analysis"],
        tables=GATHERED_TABLES,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    log:
        log_path("gather_analysis", "{sae}"),
    benchmark:
        benchmark_path("gather_analysis", "{sae}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/gather_analysis.py"
