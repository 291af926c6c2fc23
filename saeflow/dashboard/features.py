"""Per-feature tables of one SAE as flat arrays: one value per feature, or rows grouped by feature.

Grouped rows use CSR form: the rows of feature f are ptr[f] .. ptr[f+1]-1 of every column, so
the page finds a feature's influences or neighbours with two lookups and no parsing.
Missing floats (Parquet nulls) become NaN, which the page shows as "–".
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from saeflow.analysis.groups import rank_in_runs, run_starts
from saeflow.dashboard.blob import smallest_uint
from saeflow.errors import SaeflowError

# Detection has a row per (unit, label); the page shows the best few labels of each unit.
DETECTION_PER_UNIT = 10
NEIGHBOUR_KINDS = ("cosine", "coactivation")


def floats(table: pa.Table, column: str) -> np.ndarray:
    return table[column].cast(pa.float32()).to_numpy()


def ints(table: pa.Table, column: str) -> np.ndarray:
    return table[column].to_numpy().astype(np.int64)


def check_ids(feature: np.ndarray, n_features: int, source: str) -> np.ndarray:
    if feature.size and (feature.min() < 0 or feature.max() >= n_features):
        raise SaeflowError(f"{source}: feature ids must lie in 0..{n_features - 1} (cfg.json d_sae)")
    return feature


def feature_ptr(feature: np.ndarray, n_features: int, source: str) -> np.ndarray:
    """CSR offsets of rows sorted by feature."""
    check_ids(feature, n_features, source)
    return smallest_uint(np.searchsorted(feature, np.arange(n_features + 1)))


def ragged_ptr(feature: np.ndarray, lengths: np.ndarray, n_features: int) -> np.ndarray:
    """CSR offsets of lists, one list per row of `feature` (features without a row get none)."""
    per = np.zeros(n_features, dtype=np.int64)
    per[feature] = lengths
    return smallest_uint(np.concatenate([[0], np.cumsum(per)]))


def per_feature(table: pa.Table, key: str, n_features: int, source: str) -> np.ndarray:
    """The row of each feature (−1 where it has none)."""
    feature = check_ids(ints(table, key), n_features, source)
    row = np.full(n_features, -1, dtype=np.int64)
    row[feature] = np.arange(feature.size)
    return row


def spread(values: np.ndarray, row: np.ndarray, fill) -> np.ndarray:
    """values[row] with `fill` where row is −1."""
    out = np.full(row.size, fill, dtype=values.dtype)
    out[row >= 0] = values[row[row >= 0]]
    return out


def stats_arrays(stats: pa.Table, n_features: int, source: str) -> dict[str, np.ndarray]:
    row = per_feature(stats, "feature", n_features, source)
    arrays = {"n_active": smallest_uint(spread(ints(stats, "n_active"), row, 0))}
    for column in ("density", "max", "mean", "std", "min"):
        arrays[column] = spread(floats(stats, column), row, np.float32("nan"))
    return arrays


def histogram_arrays(hist: pa.Table, n_features: int, source: str) -> dict[str, np.ndarray]:
    hist = hist.sort_by("feature")
    feature = check_ids(ints(hist, "feature"), n_features, source)
    arrays = {}
    for column, name in (("counts", "hist.counts"), ("edges", "hist.edges")):
        lengths = pc.fill_null(pc.list_value_length(hist[column]), 0).to_numpy()
        arrays[f"{name}_ptr"] = ragged_ptr(feature, lengths, n_features)
        values = pc.list_flatten(hist[column])
        arrays[name] = smallest_uint(values.to_numpy()) if column == "counts" else values.cast(pa.float32()).to_numpy()
    return arrays


def unit_arrays(unit_map: dict, thresholds: pa.Table | None, n_features: int, source: str) -> tuple[dict, list[str]]:
    """new_unit (−1 = pruned) and the thresholds p<q> of kept units (NaN elsewhere)."""
    kept = np.asarray(unit_map["kept_units"], dtype=np.int64)
    new_unit = np.full(n_features, -1, dtype=np.int32)
    new_unit[kept] = np.arange(kept.size, dtype=np.int32)
    arrays, names = {"new_unit": new_unit}, []
    if thresholds is not None:
        row = per_feature(thresholds, "unit", n_features, source)
        names = [c for c in thresholds.column_names if c.startswith("p") and c[1:].replace("_", "").isdigit()]
        for name in names:
            arrays[f"thr.{name}"] = spread(floats(thresholds, name), row, np.float32("nan"))
    return arrays, names


def strings_index(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Ids into a list of the column's distinct strings."""
    encoded = column.combine_chunks().dictionary_encode()
    return smallest_uint(encoded.indices.to_numpy()), encoded.dictionary.to_pylist()


def influence_arrays(table: pa.Table, n_features: int, source: str) -> tuple[dict, list[str]]:
    table = table.sort_by([("feature", "ascending"), ("sign", "ascending"), ("rank", "ascending")])
    token, strings = strings_index(table["token"])
    return {
        "inf.ptr": feature_ptr(ints(table, "feature"), n_features, source),
        "inf.positive": pc.equal(table["sign"], "+").to_numpy(zero_copy_only=False).astype(np.uint8),
        "inf.token": token,
        "inf.score": floats(table, "score"),
    }, strings


def neighbour_arrays(table: pa.Table, n_features: int, source: str) -> dict:
    table = table.sort_by([("feature", "ascending"), ("kind", "ascending"), ("rank", "ascending")])
    kind = pc.index_in(table["kind"], value_set=pa.array(NEIGHBOUR_KINDS))
    if kind.null_count:
        raise SaeflowError(f"{source}: kind must be one of {NEIGHBOUR_KINDS}")
    return {
        "nb.ptr": feature_ptr(ints(table, "feature"), n_features, source),
        "nb.kind": kind.to_numpy().astype(np.uint8),
        "nb.other": smallest_uint(ints(table, "other")),
        "nb.score": floats(table, "score"),
    }


def detection_arrays(table: pa.Table, n_features: int, source: str) -> tuple[dict, list[str]]:
    """Each unit's DETECTION_PER_UNIT labels of highest F1 (undefined F1 last)."""
    table = table.sort_by([("unit", "ascending"), ("f1", "descending")])
    unit = ints(table, "unit")
    keep = rank_in_runs(run_starts(unit)) < DETECTION_PER_UNIT
    table = table.filter(pa.array(keep))
    label, strings = strings_index(table["label"])
    arrays = {"det.ptr": feature_ptr(unit[keep], n_features, source), "det.label": label}
    for column in ("precision", "recall", "f1", "auroc"):
        arrays[f"det.{column}"] = floats(table, column)
    return arrays, strings


def label_list(table: pa.Table, n_features: int, source: str) -> list[str]:
    row = per_feature(table, "feature", n_features, source)
    labels = table["label"].to_pylist()
    return [(labels[r] or "") if r >= 0 else "" for r in row]
