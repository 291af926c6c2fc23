"""Pruning: which units (features) to keep, the filtered sparse store, and kept units' thresholds.

A unit is kept when it fires (n_active > 0), its density lies in [min_density, max_density], its
max activation reaches min_max_activation, and its selectivity (max / mean of its nonzero
values: how far its peak stands above its typical activation) reaches min_selectivity. If
max_units is set, only the max_units kept units with the largest score (sum of activations, the
unit's total activation mass; ties to the smaller id) stay. Kept units get new ids 0..n_kept−1
in the order of their original ids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from saeflow import storage
from saeflow.storage import read_sparse_chunk


@dataclass(frozen=True)
class UnitCriteria:
    min_density: float = 0.0
    max_density: float = 1.0
    min_max_activation: float = 0.0
    min_selectivity: float = 0.0
    max_units: int | None = None


def select_units(stats: dict[str, np.ndarray], criteria: UnitCriteria) -> np.ndarray:
    """Sorted original ids of the kept units, from feature_stats columns (nulls as NaN)."""
    n_active, density = stats["n_active"], stats["density"]
    peak = np.nan_to_num(stats["max"].astype(np.float64), nan=0.0)
    mean = np.nan_to_num(stats["mean"].astype(np.float64), nan=0.0)
    selectivity = np.divide(peak, mean, out=np.zeros_like(peak), where=mean > 0)
    keep = ((n_active > 0) & (density >= criteria.min_density) & (density <= criteria.max_density)
            & (peak >= criteria.min_max_activation) & (selectivity >= criteria.min_selectivity))
    kept = stats["feature"][keep]
    if criteria.max_units is not None and len(kept) > criteria.max_units:
        score = stats["sum"][keep]
        best = np.lexsort((kept, -score))[: criteria.max_units]
        kept = np.sort(kept[best])
    return kept.astype(np.int64)


def write_unit_map(path, kept: np.ndarray, n_original: int, criteria: UnitCriteria) -> None:
    storage.write_json(path, {
        "kept_units": kept.tolist(),
        "n_original": n_original,
        "n_filtered": len(kept),
        "criteria": {**asdict(criteria), "selectivity": "max / mean of nonzero values",
                     "score": "sum of activations (used with max_units)"},
    })


def read_kept_units(unit_map_path) -> np.ndarray:
    """`kept_units` of unit_map.json, checked to be sorted distinct ids >= 0."""
    kept = storage.read_json(unit_map_path, keys=("kept_units",))["kept_units"]
    if not (isinstance(kept, list) and all(isinstance(unit, int) and unit >= 0 for unit in kept)
            and all(a < b for a, b in zip(kept, kept[1:]))):
        raise storage.damaged(unit_map_path, "`kept_units` is not a sorted list of distinct unit ids >= 0")
    return np.asarray(kept, dtype=np.int64)


def filter_chunk(chunk_path, kept: np.ndarray, out_path) -> None:
    """The CSR chunk with pruned units' entries dropped and kept ids remapped to 0..n_kept−1.

    `kept` is sorted, so the remap keeps each token's ids ascending.
    """
    chunk = read_sparse_chunk(chunk_path)
    if len(kept) and kept[-1] >= chunk.n_features:
        raise storage.damaged(chunk_path, f"{chunk.n_features} features, but the unit map keeps unit {kept[-1]}")
    new_id = np.full(chunk.n_features, -1, dtype=np.int32)
    new_id[kept] = np.arange(len(kept), dtype=np.int32)
    remapped = new_id[chunk.indices]
    entries = np.flatnonzero(remapped >= 0)
    row_counts = np.bincount(chunk.entry_rows()[entries], minlength=chunk.n_tokens)
    with storage.CsrChunkWriter(out_path, chunk.n_tokens, len(kept), chunk.token_start, chunk.value_dtype,
                                attrs={"filtered": True}) as out:
        out.append(row_counts, remapped[entries], chunk.values[entries])


def thresholds_table(percentiles: pa.Table, kept: np.ndarray) -> pa.Table:
    """One row per kept unit: unit, new_unit and its percentile columns."""
    rows = np.searchsorted(percentiles.column("feature").to_numpy(), kept)
    table = percentiles.take(pa.array(rows, pa.int64()))
    table = table.rename_columns(["unit", *table.column_names[1:]])
    return table.add_column(1, "new_unit", pa.array(np.arange(len(kept)), pa.int64()))


def kept_rows(table: pa.Table, column: str, kept: np.ndarray) -> pa.Table:
    """The rows of `table` whose `column` is a kept unit."""
    return table.filter(pa.array(np.isin(table.column(column).to_numpy(), kept)))
