"""An SAE's concept ranking (analysis/concepts.parquet) for the page: per corpus label and level,
the SAE's best units beside the dense baseline's best dimensions (the hook's raw dimensions, each
in both signs), ranked on the calibration split, with their scores on both splits.

The table has at most top_n rows per (label, level, source, criterion), so all of it goes into
one small blob per SAE, decoded by the concepts view and by a feature page of that SAE. The
manifest gets a summary for the overview: how often the SAE's rank-1 unit beats the rank-1 dense
dimension on the test split.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from saeflow.concept_items import LEVELS
from saeflow.concepts import CONCEPTS_SCHEMA, CRITERIA, METRICS, SOURCES
from saeflow.dashboard.blob import compact_floats, smallest_uint
from saeflow.dashboard.tables import check_ids, codes, require_columns
from saeflow.errors import SaeflowError
from saeflow.splits import SPLITS

SCORES = tuple(f"{split}_{metric}" for split in SPLITS for metric in METRICS)


def concepts_blob(table: pa.Table, n_features: int, source: str) -> tuple[dict, dict[str, np.ndarray], dict]:
    """The blob's payload and arrays (rows by label, level, criterion, source, rank; label, level,
    source and criterion as indices into the payload's lists; `negated` 1 where sign is −1), and
    the manifest's summary: labels, levels and, per criterion, [SAE ahead, compared]."""
    require_columns(table, tuple(CONCEPTS_SCHEMA.names), source)
    labels = tuple(sorted(set(table["label"].drop_null().to_pylist())))
    arrays = {name: codes(table, name, names, source) for name, names in
              (("label", labels), ("level", LEVELS), ("source", SOURCES), ("criterion", CRITERIA))}
    rank, unit, sign = (table[c].to_numpy().astype(np.int64) for c in ("rank", "unit", "sign"))
    if not np.isin(sign, (1, -1)).all():
        raise SaeflowError(f"{source}: sign must be +1 or −1")
    check_ids(unit[arrays["source"] == SOURCES.index("sae")], n_features, source)
    order = np.lexsort((rank, arrays["source"], arrays["criterion"], arrays["level"], arrays["label"]))
    arrays.update({"rank": rank, "unit": unit, "negated": (sign == -1).astype(np.uint8)})
    arrays = {name: values[order] for name, values in arrays.items()}
    for name in ("rank", "unit"):
        arrays[name] = smallest_uint(arrays[name])
    for name in ("threshold", *SCORES):
        arrays[name] = compact_floats(table[name].cast(pa.float32()).to_numpy()[order])
    payload = {"labels": list(labels), "levels": list(LEVELS), "sources": list(SOURCES), "criteria": list(CRITERIA)}
    summary = {"labels": len(labels), "levels": [LEVELS[i] for i in np.unique(arrays["level"])],
               "ahead": _ahead(arrays)}
    return payload, arrays, summary


def _ahead(arrays: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Per criterion: in how many (label, level) the SAE's rank-1 unit scores higher on test than
    the rank-1 dense dimension, of those where both have a test score (as packed, so the overview
    agrees with the numbers the view shows)."""
    best: dict[tuple, dict[int, float]] = {}
    for i in np.flatnonzero(arrays["rank"] == 1):
        criterion = CRITERIA[arrays["criterion"][i]]
        score = float(arrays[f"{SPLITS[1]}_{criterion}"][i])
        key = (int(arrays["label"][i]), int(arrays["level"][i]), criterion)
        best.setdefault(key, {})[int(arrays["source"][i])] = score
    out = {criterion: [0, 0] for criterion in CRITERIA}
    for (_, _, criterion), scores in best.items():
        sae, dense = (scores.get(SOURCES.index(name), np.nan) for name in SOURCES)
        if np.isfinite(sae) and np.isfinite(dense):
            out[criterion][0] += int(sae > dense)
            out[criterion][1] += 1
    return out
