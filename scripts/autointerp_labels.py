"""llm_labels.parquet: each prompt sent to the configured OpenAI-compatible endpoint."""
from saeflow import autointerp, jobs

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    settings = snakemake.params.settings
    endpoint = autointerp.endpoint_from_config(settings)  # the API key is read from the job's environment
    total = autointerp.count_prompts(snakemake.input.prompts, settings["max_features"])
    with jobs.progress(total, snakemake.wildcards.sae, "feature") as bar:
        autointerp.label_features(snakemake.input.prompts, snakemake.output.labels, endpoint,
                                  max_features=settings["max_features"], progress=bar)


jobs.run_job(snakemake.log[0], main)
