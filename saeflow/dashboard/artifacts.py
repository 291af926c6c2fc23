"""The dashboard's inputs: the run (model name, corpus tables) and each SAE's artifacts, by the
dashboard rule's input names. Every input given must exist; an SAE's optional artifact that is not
given (concept detection and concepts without labels, steering, ablation, LLM labels) is simply
not shown."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from saeflow import storage
from saeflow.errors import SaeflowError

# Per SAE, by input name: JSON files, then Parquet tables (one file each at most), then Parquet
# tables an SAE may have any number of (one per steering experiment).
SAE_JSON = ("sae_cfg", "eval", "unit_map", "analysis_params")
SAE_TABLES = ("feature_stats", "histograms", "top_examples", "quantile_examples", "influences", "neighbours",
              "labels", "detection", "training_log", "thresholds", "ablation", "ablation_logits", "llm_labels",
              "label_alignment", "concepts")
SAE_TABLE_LISTS = ("steering",)
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
    """One SAE's artifact files, by input name: a path each, but a list of paths for the keys of
    SAE_TABLE_LISTS."""

    def __init__(self, name: str, paths: Mapping[str, str | Path | list]):
        self.name = name
        unknown = set(paths) - set(SAE_JSON) - set(SAE_TABLES) - set(SAE_TABLE_LISTS)
        if unknown:
            raise SaeflowError(f"SAE {name}: unknown dashboard inputs {sorted(unknown)}")
        for key in REQUIRED:
            if key not in paths:
                raise SaeflowError(f"SAE {name}: the dashboard needs input {key!r}; the dashboard rule must give it")
        owner = f" of SAE {name}"
        self.paths = {key: [_existing(key, p, owner) for p in path] if key in SAE_TABLE_LISTS
                      else _existing(key, path, owner) for key, path in paths.items()}

    def path(self, key: str) -> Path | None:
        """The input `key`, or None where it is not given."""
        return self.paths.get(key)

    def table(self, key: str) -> pa.Table | None:
        """The Parquet input `key`, or None where it is not given."""
        return storage.read_parquet_table(self.paths[key]) if key in self.paths else None

    def tables(self, key: str) -> list[tuple[Path, pa.Table]]:
        """Each file of the list input `key` (SAE_TABLE_LISTS) with its table; none where not given."""
        return [(path, storage.read_parquet_table(path)) for path in self.paths.get(key, [])]

    def json(self, key: str):
        """The JSON input `key`, or None where it is not given."""
        return storage.read_json(self.paths[key]) if key in self.paths else None


def from_inputs(inputs: Mapping[str, object], model: str, sae_names: list[str],
                owners: Mapping[str, list[str]] | None = None) -> tuple[Run, list[SaeArtifacts]]:
    """The run and SAEs of the dashboard rule's named inputs (snakemake.input as a dict): `tokens`
    and `documents`, and per SAE input name a list of paths over `sae_names`, in that order; but
    for a key of `owners` (params.owners) over owners[key], the SAE of each path: where not every
    SAE has the artifact (influences: only SAEs on a hidden_states hook), and for `steering`, one
    path per experiment (an SAE may own several, or none)."""
    for key in CORPUS:
        if key not in inputs:
            raise SaeflowError(f"the dashboard needs input {key!r} (corpus/{key}.parquet); "
                               "the dashboard rule must give it")
    run = Run(model, *(_existing(key, inputs[key], "") for key in CORPUS))
    owners = dict(owners or {})
    keys = (*SAE_JSON, *SAE_TABLES, *SAE_TABLE_LISTS)
    if unknown := set(owners) - set(keys):
        raise SaeflowError(f"params.owners names unknown dashboard inputs {sorted(unknown)}")
    paths_of: dict[str, dict] = {name: {} for name in sae_names}
    for key in keys:
        names = list(owners.get(key, sae_names))
        if key not in inputs:
            if key in owners and names:
                raise SaeflowError(f"params.owners gives SAEs {names} for input {key!r}, which the rule does not give")
            continue
        paths = inputs[key]
        if isinstance(paths, (str, Path)) or len(paths) != len(names) or not set(names) <= set(paths_of):
            raise SaeflowError(f"dashboard input {key!r}: expected one path per SAE of {names}, got {paths!r}")
        if key not in SAE_TABLE_LISTS and len(set(names)) != len(names):
            raise SaeflowError(f"dashboard input {key!r}: an SAE may have one path, but params.owners gives {names}")
        for name, path in zip(names, paths):
            if key in SAE_TABLE_LISTS:
                paths_of[name].setdefault(key, []).append(path)
            else:
                paths_of[name][key] = path
    return run, [SaeArtifacts(name, paths_of[name]) for name in sae_names]


def parquet_rows(path: str | Path) -> int:
    """Row count from the Parquet footer, without reading the data."""
    return storage.open_parquet(path).metadata.num_rows


def has_column(path: str | Path, column: str) -> bool:
    return column in storage.open_parquet(path).schema_arrow.names


def finite_or_none(value):
    """JSON-safe number: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
