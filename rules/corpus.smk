# Corpus -> tokens, documents and token IDF (results/corpus/).


rule corpus:
    input:
        CORPUS_FILES,
    output:
        tokens=PATHS["tokens"],
        documents=PATHS["documents"],
        idf=PATHS["idf"],
    params:
        source=config["corpus"]["source"],
        format=config["corpus"]["format"],
        text_field=config["corpus"]["text_field"],
        labels_field=config["corpus"]["labels_field"],
        max_documents=config["corpus"]["max_documents"],
        max_tokens=config["corpus"]["max_tokens"],
        model_path=MODEL_PATH,
        context_len=config["model"]["context_len"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        log_path("corpus"),
    benchmark:
        benchmark_path("corpus")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/corpus.py"
