"""The dashboard's inputs: the run (model name, corpus tables) and each SAE's artifacts, by the
dashboard rule's input names. Every input given must exist; an SAE's optional artifact that is not
given (concept detection without document labels) is simply not shown."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from saeflow.errors import SaeflowError

# Per SAE, by input name: JSON files, then Parquet tables.
SAE_JSON = ("sae_cfg", "eval", "unit_map", "analysis_params")
SAE_TABLES = ("feature_stats", "histograms", "top_examples", "quantile_examples", "influences", "neighbours",
              "labels", "detection", "training_log", "thresholds")
REQUIRED = ("sae_cfg", "feature_stats")  # what an SAE's page cannot do without
CORPUS = ("tokens", "documents")


def _existing(key: str, path, owner: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise SaeflowError(f"dashboard input {key!r}{owner}: {path} not found; build it with the workflow first")
    return path


@dataclass
class Run:
    """What the run shares: its model's name as configured (never a local path) and its corpus tables."""

    model: str
    tokens: Path
    documents: Path


class SaeArtifacts:
    """One SAE's artifact files, by input name."""

    def __init__(self, name: str, paths: Mapping[str, str | Path]):
        self.name = name
        unknown = set(paths) - set(SAE_JSON) - set(SAE_TABLES)
        if unknown:
            raise SaeflowError(f"SAE {name}: unknown dashboard inputs {sorted(unknown)}")
        for key in REQUIRED:
            if key not in paths:
                raise SaeflowError(f"SAE {name}: the dashboard needs input {key!r}; the dashboard rule must give it")
        self.paths = {key: _existing(key, path, f" of SAE {name}") for key, path in paths.items()}

    def path(self, key: str) -> Path | None:
        """The input `key`, or None where it is not given."""
        return self.paths.get(key)

    def table(self, key: str) -> pa.Table | None:
        """The Parquet input `key`, or None where it is not given."""
        return pq.read_table(self.paths[key]) if key in self.paths else None

    def json(self, key: str):
        """The JSON input `key`, or None where it is not given."""
        return json.loads(self.paths[key].read_text()) if key in self.paths else None


def from_inputs(inputs: Mapping[str, object], model: str, sae_names: list[str],
                influence_saes: list[str] | None = None) -> tuple[Run, list[SaeArtifacts]]:
    """The run and SAEs of the dashboard rule's named inputs (snakemake.input as a dict): `tokens`
    and `documents`, and per SAE input name a list of paths over `sae_names`, in that order; but
    `influences` over `influence_saes` (the SAEs that have them: those on a hidden_states hook)
    where that is given."""
    for key in CORPUS:
        if key not in inputs:
            raise SaeflowError(f"the dashboard needs input {key!r} (corpus/{key}.parquet); "
                               "the dashboard rule must give it")
    run = Run(model, *(_existing(key, inputs[key], "") for key in CORPUS))
    paths_of: dict[str, dict] = {name: {} for name in sae_names}
    for key in (*SAE_JSON, *SAE_TABLES):
        if key not in inputs:
            continue
        names = influence_saes if key == "influences" and influence_saes is not None else sae_names
        paths = inputs[key]
        if isinstance(paths, (str, Path)) or len(paths) != len(names) or not set(names) <= set(paths_of):
            raise SaeflowError(f"dashboard input {key!r}: expected one path per SAE of {names}, got {paths!r}")
        for name, path in zip(names, paths):
            paths_of[name][key] = path
    return run, [SaeArtifacts(name, paths_of[name]) for name in sae_names]


def parquet_rows(path: str | Path) -> int:
    """Row count from the Parquet footer, without reading the data."""
    return pq.ParquetFile(path).metadata.num_rows


def has_column(path: str | Path, column: str) -> bool:
    return column in pq.read_schema(path).names


def finite_or_none(value):
    """JSON-safe number: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
