"""One sparse chunk with pruned units removed and kept units renumbered."""
from saeflow import jobs, units

snakemake = snakemake  # noqa: F821  (injected by Snakemake)

jobs.run_job(snakemake.log[0], lambda: units.filter_chunk(
    snakemake.input.features, units.read_kept_units(snakemake.input.unit_map), snakemake.output.filtered))
