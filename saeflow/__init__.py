"""saeflow: the library behind the Snakemake workflow (all logic lives here, testable without Snakemake)."""
