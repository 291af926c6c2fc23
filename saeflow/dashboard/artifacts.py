"""Reading one SAE's artifacts for the dashboard: the files the contract names, optional ones as None."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from saeflow.errors import SaeflowError

# Analysis tables under analysis/, by the name the dashboard uses.
ANALYSES = ("feature_stats", "histograms", "top_examples", "quantile_examples", "influences",
            "neighbours", "labels", "detection")


class SaeArtifacts:
    """Paths of one SAE's files (results/saes/<name>/) and readers that tolerate optional ones."""

    def __init__(self, name: str, directory: str | Path):
        self.name = name
        self.dir = Path(directory)

    def path(self, table: str) -> Path:
        if table in ANALYSES:
            return self.dir / "analysis" / f"{table}.parquet"
        return {
            "cfg": self.dir / "cfg.json",
            "eval": self.dir / "eval.json",
            "training_log": self.dir / "training_log.parquet",
            "unit_map": self.dir / "units" / "unit_map.json",
            "thresholds": self.dir / "units" / "thresholds.parquet",
            "params": self.dir / "analysis" / "params.json",
        }[table]

    def table(self, name: str, required: bool = False) -> pa.Table | None:
        path = self.path(name)
        if not path.is_file():
            if required:
                raise SaeflowError(f"{path}: file not found; build the SAE's analysis with the workflow first")
            return None
        return pq.read_table(path)

    def json(self, name: str, required: bool = False):
        path = self.path(name)
        if not path.is_file():
            if required:
                raise SaeflowError(f"{path}: file not found; build the SAE with the workflow first")
            return None
        return json.loads(path.read_text())


def parquet_rows(path: str | Path) -> int:
    """Row count from the Parquet footer, without reading the data."""
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except FileNotFoundError:
        raise SaeflowError(f"{path}: file not found; build the corpus with the workflow first") from None


def has_column(path: str | Path, column: str) -> bool:
    return column in pq.read_schema(path).names


def finite_or_none(value):
    """JSON-safe number: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
