"""Per concept, the units that detect it best: the SAE's features against the hook's raw dimensions.

Units are ranked on the calibration split (where their thresholds were fitted) and reported with
their test scores beside, so each concept shows both whether the SAE beats single neurons and how
much of a calibration score survives on documents it never saw.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from saeflow.errors import SaeflowError

METRICS = ("precision", "recall", "f1", "auroc")
CRITERIA = ("f1", "auroc")
SOURCES = ("sae", "dense")  # the SAE's units; the hook's raw dimensions
KEYS = ("label", "level", "unit", "sign")
CONCEPTS_SCHEMA = pa.schema([
    ("label", pa.string()), ("level", pa.string()), ("source", pa.string()), ("criterion", pa.string()),
    ("rank", pa.int32()), ("unit", pa.int64()), ("sign", pa.int8()), ("threshold", pa.float64()),
    *((f"{split}_{metric}", pa.float64()) for split in ("calibration", "test") for metric in METRICS),
])


def concept_table(sae_detection: pa.Table, dense_detection: pa.Table, top_n: int) -> pa.Table:
    """concepts.parquet from the SAE's detection.parquet and its hook's dense_detection.parquet."""
    if top_n < 1:
        raise SaeflowError(f"concepts.top_n must be at least 1, got {top_n}")
    sae = sae_detection.append_column("sign", pa.array(np.ones(sae_detection.num_rows, np.int8)))
    dense = dense_detection.rename_columns(["unit" if name == "dim" else name for name in dense_detection.column_names])
    parts = [best_units(_by_split(table), source, criterion, top_n)
             for source, table in zip(SOURCES, (sae, dense)) for criterion in CRITERIA]
    return pa.concat_tables(parts).sort_by([("label", "ascending"), ("level", "ascending"), ("source", "descending"),
                                            ("criterion", "ascending"), ("rank", "ascending")])


def _by_split(detection: pa.Table) -> pa.Table:
    """One row per (label, level, unit, sign): its threshold and each split's scores."""
    halves = []
    for split in ("calibration", "test"):
        rows = detection.filter(pc.equal(detection["split"], split))
        columns = {key: rows[key] for key in KEYS}
        if split == "calibration":
            columns["threshold"] = rows["threshold"]
        halves.append(pa.table({**columns, **{f"{split}_{metric}": rows[metric] for metric in METRICS}}))
    calibration, test = halves
    if calibration.num_rows != test.num_rows:
        raise SaeflowError("detection tables must score every unit and label on both splits")
    return calibration.join(test, keys=list(KEYS), join_type="inner")


def best_units(table: pa.Table, source: str, criterion: str, top_n: int) -> pa.Table:
    """The top_n units per (label, level) by calibration `criterion`, best first; ties go to the
    smaller unit, then to the positive sign. Units whose score is undefined are left out."""
    table = table.filter(pc.is_valid(table[f"calibration_{criterion}"]))
    group = _group_codes(table)
    order = np.lexsort((-table["sign"].to_numpy(), table["unit"].to_numpy(),
                        -table[f"calibration_{criterion}"].to_numpy(), group))
    group = group[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.size else np.zeros(0, np.int64)
    rank = np.arange(group.size) - np.repeat(starts, np.diff(np.r_[starts, group.size])) + 1
    keep = rank <= top_n
    table = table.take(pa.array(order[keep], pa.int64()))
    rank = rank[keep]
    n = table.num_rows
    return pa.table({
        "label": table["label"], "level": table["level"], "source": pa.array([source] * n, pa.string()),
        "criterion": pa.array([criterion] * n, pa.string()), "rank": pa.array(rank, pa.int32()),
        "unit": table["unit"].cast(pa.int64()), "sign": table["sign"].cast(pa.int8()),
        "threshold": table["threshold"].cast(pa.float64()),
        **{f"{split}_{metric}": table[f"{split}_{metric}"].cast(pa.float64())
           for split in ("calibration", "test") for metric in METRICS},
    }, schema=CONCEPTS_SCHEMA)


def _group_codes(table: pa.Table) -> np.ndarray:
    """Per row a code of its (label, level) that sorts as the pair does."""
    _, label = np.unique(table["label"].to_numpy(zero_copy_only=False).astype(str), return_inverse=True)
    _, level = np.unique(table["level"].to_numpy(zero_copy_only=False).astype(str), return_inverse=True)
    return label.astype(np.int64) * (level.max(initial=0) + 1) + level
