# Model (a GGUF file -> results/model/) and corpus -> tokens, documents and token IDF (results/corpus/);
# then each document's split (calibration / test).

if MODEL.is_gguf:

    # The tokenizer on its own, so the corpus is tokenised while the weights convert.
    rule convert_tokenizer:
        input:
            gguf=str(MODEL.path),
        output:
            tokenizer=directory(PATHS["tokenizer"]),
        threads: 1
        resources:
            mem_mb=per_attempt(2000),
            runtime=per_attempt(10),
        log:
            log_path("convert_tokenizer"),
        benchmark:
            benchmark_path("convert_tokenizer")
        conda:
            "../envs/model.yaml"
        script:
            "../scripts/convert_tokenizer.py"

    # Once per model: transformers dequantises the GGUF weights into a float32 Hugging Face
    # directory that every model job reads (seconds to load, against a minute for the GGUF file).
    rule convert_model:
        input:
            gguf=str(MODEL.path),
        output:
            model=directory(PATHS["model"]),
        # One thread: the dequantisation is numpy on one core anyway, and the other core then
        # tokenises the corpus meanwhile.
        threads: 1
        resources:
            mem_mb=per_attempt(4000),
            runtime=per_attempt(30),
        log:
            log_path("convert_model"),
        benchmark:
            benchmark_path("convert_model")
        conda:
            "../envs/model.yaml"
        script:
            "../scripts/convert_model.py"


rule corpus:
    input:
        files=CORPUS_FILES,
        tokenizer=TOKENIZER_DIR,
    output:
        tokens=PATHS["tokens"],
        documents=PATHS["unsplit_documents"],
        idf=PATHS["idf"],
    params:
        format=config["corpus"]["format"],
        text_field=config["corpus"]["text_field"],
        labels_field=config["corpus"]["labels_field"] if CORPUS_HAS_LABELS else None,
        spans_field=config["corpus"]["spans_field"] if CORPUS_HAS_SPANS else None,
        max_documents=config["corpus"]["max_documents"],
        max_tokens=config["corpus"]["max_tokens"],
        context_len=config["model"]["context_len"],
        prepend_bos=config["model"]["prepend_bos"],
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
    log:
        log_path("corpus"),
    benchmark:
        benchmark_path("corpus")
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/corpus.py"


# Its own job, so a new split fraction or seed reruns what the split feeds (thresholds, pruning,
# detection), not the tokenisation and everything after it.
rule split_documents:
    input:
        documents=PATHS["unsplit_documents"],
    output:
        documents=PATHS["documents"],
    params:
        calibration_fraction=config["concepts"]["calibration_fraction"],
        seed=config["concepts"]["seed"],
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    log:
        log_path("split_documents"),
    benchmark:
        benchmark_path("split_documents")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/split_documents.py"
