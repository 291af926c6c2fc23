"""Tokenise the configured corpus into results/corpus/ (tokens, documents, IDF)."""
from saeflow import corpus, jobs, model, sequences

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
p = snakemake.params


def main():
    tokenizer = model.load_tokenizer(snakemake.input.tokenizer)
    documents = corpus.iter_documents(list(snakemake.input.files), p.format, p.text_field, p.labels_field,
                                         p.spans_field)
    with jobs.progress(None, "documents", "doc") as bar:
        sequences.tokenize_corpus(
            documents, tokenizer, p.context_len,
            snakemake.output.tokens, snakemake.output.documents, snakemake.output.idf,
            max_documents=p.max_documents, max_tokens=p.max_tokens, prepend_bos=p.prepend_bos, progress=bar,
        )


jobs.run_job(snakemake.log[0], main)
