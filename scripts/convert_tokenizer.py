"""The configured GGUF model's tokenizer as a Hugging Face tokenizer directory (results/tokenizer/)."""
from saeflow import jobs, model_source

snakemake = snakemake  # noqa: F821  (injected by Snakemake)

jobs.run_job(snakemake.log[0], lambda: model_source.convert_gguf_tokenizer(snakemake.input.gguf,
                                                                         snakemake.output.tokenizer))
