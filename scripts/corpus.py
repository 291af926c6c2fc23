"""Tokenise the configured corpus into results/corpus/ (tokens, documents, IDF)."""
from saeflow import corpus, jobs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    outputs = {name: snakemake.output[name] for name in ("tokens", "documents", "idf")}
    with jobs.progress(None, "documents", "doc") as bar:
        corpus.corpus_job(list(snakemake.input.files), snakemake.input.tokenizer, outputs,
                          dict(snakemake.params.items()), progress=bar)


jobs.run_job(snakemake.log[0], main)
