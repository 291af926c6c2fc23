"""An SAE's steering experiments (steering/<experiment>.parquet, one per experiment) for the page:
every row of every experiment in one small blob, its texts stored once.

Rows are few (prompts x targets x alphas), so they go as JSON columns: the page indexes them by
feature when it decodes the blob, and the experiments view lists them all. Rows of a vector
(a label's direction: feature null) appear only there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from saeflow.dashboard.artifacts import finite_or_none
from saeflow.dashboard.tables import check_ids
from saeflow.errors import SaeflowError

TEXTS = ("experiment", "mode", "prompt", "vector", "baseline", "steered")  # stored as ids into `texts`
NUMBERS = ("prompt_index", "feature", "alpha", "scale", "baseline_ce", "steered_ce", "baseline_activation",
           "steered_activation", "best_alpha")
FLAGS = ("within_margin",)
COLUMNS = (*TEXTS, *NUMBERS, *FLAGS)


def _order(row: dict) -> tuple:
    """Experiment, then its features by id, then its vectors, then prompt and alpha."""
    feature = row["feature"]
    return (row["experiment"], feature is None, feature or 0, row["vector"] or "", row["prompt_index"], row["alpha"])


def steering_blob(files: list[tuple[Path, pa.Table]], n_features: int) -> tuple[dict, list[dict]]:
    """The blob payload of every row of `files` (path, table), and a summary per experiment for
    the manifest: name, mode, features, vectors, prompts, alphas, rows."""
    rows = []
    for path, table in files:
        if missing := [c for c in COLUMNS if c not in table.column_names]:
            raise SaeflowError(f"{path}: steering table lacks columns {missing}; rebuild the experiment")
        check_ids(table["feature"].drop_null().to_numpy().astype(np.int64), n_features, str(path))
        rows += table.select(list(COLUMNS)).to_pylist()
    rows.sort(key=_order)
    texts: dict[str, int] = {}
    columns = {c: [None if r[c] is None else texts.setdefault(r[c], len(texts)) for r in rows] for c in TEXTS}
    columns.update({c: [finite_or_none(r[c]) for r in rows] for c in (*NUMBERS, *FLAGS)})
    return {"texts": list(texts), "rows": columns}, _summary(rows)


def _summary(rows: list[dict]) -> list[dict]:
    out: dict[str, dict] = {}
    for r in rows:
        e = out.setdefault(r["experiment"], {"name": r["experiment"], "modes": set(), "features": set(),
                                             "vectors": set(), "prompts": set(), "alphas": set(), "rows": 0})
        e["modes"].add(r["mode"])
        (e["features"] if r["feature"] is not None else e["vectors"]).add(
            r["feature"] if r["feature"] is not None else r["vector"])
        e["prompts"].add(r["prompt_index"])
        e["alphas"].add(finite_or_none(r["alpha"]))
        e["rows"] += 1
    return [{"name": e["name"], "mode": ", ".join(sorted(e["modes"])), "features": sorted(e["features"]),
             "vectors": sorted(e["vectors"], key=str), "prompts": len(e["prompts"]),
             "alphas": sorted(a for a in e["alphas"] if a is not None), "rows": e["rows"]} for e in out.values()]
