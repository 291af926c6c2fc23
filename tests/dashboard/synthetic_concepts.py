"""Synthetic concept tables of a labelled corpus in the pipeline's schemas: detection.parquet (a row
per kept unit, label, level and split) and concepts.parquet (per label, level, source and
criterion the top_n units ranked on calibration, with their scores on both splits)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from saeflow.concepts import CONCEPTS_SCHEMA, METRICS
from saeflow.feature_shard import DETECTION_SCHEMA
from saeflow.splits import SPLITS


def _nullable(values) -> pa.Array:
    return pa.array(values, pa.float64(), from_pandas=True)  # NaN -> null


def detection_table(rng, kept: np.ndarray, thresholds: np.ndarray, labels: list[str], levels: tuple[str, ...]) -> pa.Table:
    """Random scores; every 11th row has no F1 (nothing detected), every 7th no AUROC."""
    per_unit = [(label, level, split) for label in labels for level in levels for split in SPLITS]
    n = kept.size * len(per_unit)
    label, level, split = (list(c) * kept.size for c in zip(*per_unit))
    precision, recall = rng.uniform(0.05, 1, (2, n))
    row = np.arange(n)
    return pa.table({
        "unit": np.repeat(kept, len(per_unit)), "label": label, "level": level, "split": split,
        "threshold": np.repeat(thresholds, len(per_unit)).astype(np.float64),
        "precision": _nullable(np.where(row % 11 == 5, np.nan, precision)), "recall": recall,
        "f1": _nullable(np.where(row % 11 == 5, np.nan, 2 * precision * recall / (precision + recall))),
        "auroc": _nullable(np.where(row % 7 == 3, np.nan, rng.uniform(0.3, 1, n)))}, schema=DETECTION_SCHEMA)


def concepts_table(rng, kept: np.ndarray, d_in: int, labels: list[str], levels: tuple[str, ...], top_n: int) -> pa.Table:
    """SAE units drawn from the kept ones, dense dimensions in either sign; calibration scores fall
    with rank in the criterion, test scores a little below them; one test AUROC undefined."""
    rows = []
    for label in labels:
        for level in levels:
            for source, low in (("sae", 0.4), ("dense", 0.2)):
                for criterion in ("f1", "auroc"):
                    rows += _ranked(rng, kept, d_in, top_n, low, dict(label=label, level=level, source=source,
                                                                       criterion=criterion))
    rows[len(rows) // 3]["test_auroc"] = None
    rng.shuffle(rows)  # the dashboard must not rely on the file's order
    return pa.Table.from_pylist(rows, schema=CONCEPTS_SCHEMA)


def _ranked(rng, kept, d_in, top_n, low, group) -> list[dict]:
    dense = group["source"] == "dense"
    units = rng.choice(d_in if dense else kept, top_n, replace=False)
    calibration = np.sort(rng.uniform(low, 1, (top_n, len(METRICS))), axis=0)[::-1]
    test = np.clip(calibration - rng.uniform(0, 0.3, calibration.shape), 0, 1)
    return [{**group, "rank": r + 1, "unit": int(units[r]), "sign": int(rng.choice([-1, 1])) if dense else 1,
             "threshold": float(rng.uniform(0.1, 3)),
             **{f"{SPLITS[0]}_{m}": float(calibration[r, j]) for j, m in enumerate(METRICS)},
             **{f"{SPLITS[1]}_{m}": float(test[r, j]) for j, m in enumerate(METRICS)}} for r in range(top_n)]
