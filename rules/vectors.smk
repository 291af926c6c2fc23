# Activation chunks -> per hook, each document's pooled vector, their mean and each one's cosine
# to it; with corpus labels, per label the mean-difference vector (a steering direction), and per
# SAE the cosine of every decoder row with each label vector of its hook.


rule document_vectors:
    input:
        chunks=lambda wildcards: hook_chunks(wildcards.hook),
        tokens=PATHS["tokens"],
        documents=PATHS["documents"],
    output:
        vectors=directory(PATHS["doc_vectors"]),
        mean=PATHS["doc_mean"],
        table=PATHS["doc_vector_table"],
    params:
        pool=config["vectors"]["pool"],
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    log:
        log_path("document_vectors", "{hook}"),
    benchmark:
        benchmark_path("document_vectors", "{hook}")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/document_vectors.py"


# Label rules exist only for a labelled corpus, so neither can run otherwise.
if CORPUS_HAS_LABELS:

    rule label_vectors:
        input:
            vectors=PATHS["doc_vectors"],
            documents=PATHS["documents"],
        output:
            vectors=PATHS["label_vectors"],
            table=PATHS["label_vector_table"],
        threads: 1
        resources:
            mem_mb=per_attempt(2000),
            runtime=per_attempt(10),
        log:
            log_path("label_vectors", "{hook}"),
        benchmark:
            benchmark_path("label_vectors", "{hook}")
        conda:
            "../envs/tables.yaml"
        script:
            "../scripts/label_vectors.py"

    rule label_alignment:
        input:
            weights=PATHS["sae_weights"],
            label_vectors=lambda wildcards: path("label_vectors", hook=SAE_HOOK[wildcards.sae]),
        output:
            alignment=PATHS["label_alignment"],
        threads: 1
        resources:
            mem_mb=per_attempt(4000),
            runtime=per_attempt(10),
        log:
            log_path("label_alignment", "{sae}"),
        benchmark:
            benchmark_path("label_alignment", "{sae}")
        conda:
            "../envs/tables.yaml"
        script:
            "../scripts/label_alignment.py"
