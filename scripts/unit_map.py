"""Choose the kept units from the feature stats (units/unit_map.json)."""
from saeflow import jobs, storage, units

snakemake = snakemake  # noqa: F821  (injected by Snakemake)


def main():
    stats = storage.read_parquet_columns(snakemake.input.stats, ["feature", "n_active", "density", "max", "mean", "sum"])
    criteria = units.UnitCriteria(**snakemake.params.criteria)
    kept = units.select_units(stats, criteria)
    units.write_unit_map(snakemake.output.unit_map, kept, len(stats["feature"]), criteria)


jobs.run_job(snakemake.log[0], main)
