"""Shapes the packed data takes: rows grouped by feature, and the page's one table of strings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from saeflow.dashboard.blob import smallest_uint
from saeflow.errors import SaeflowError


def check_ids(feature: np.ndarray, n_features: int, source: str) -> np.ndarray:
    if feature.size and (feature.min() < 0 or feature.max() >= n_features):
        raise SaeflowError(f"{source}: feature ids must lie in 0..{n_features - 1} (cfg.json d_sae)")
    return feature


def require_columns(table: pa.Table, columns: tuple[str, ...], source: str) -> None:
    if missing := [c for c in columns if c not in table.column_names]:
        raise SaeflowError(f"{source}: lacks columns {missing}; rebuild it with the workflow")


def codes(table: pa.Table, column: str, names: tuple[str, ...], source: str) -> np.ndarray:
    """Each row's `column` as its index in `names`, the values the contract allows."""
    at = pc.index_in(table[column], value_set=pa.array(names, table[column].type))
    if at.null_count:
        raise SaeflowError(f"{source}: {column} must be one of {names}")
    return smallest_uint(at.to_numpy())


@dataclass
class ByFeature:
    """Rows grouped by feature (CSR): feature f's rows are ptr[f] .. ptr[f+1]-1 of every column.

    The page finds a feature's rows with two lookups, and a range of features slices cleanly,
    which is how the rows are split into blobs the page decodes one at a time.
    """

    prefix: str
    ptr: np.ndarray  # int64, n_features + 1
    columns: dict[str, np.ndarray]

    @classmethod
    def from_sorted(cls, prefix: str, feature: np.ndarray, n_features: int, source: str, columns: dict) -> "ByFeature":
        """From rows already sorted by feature."""
        check_ids(feature, n_features, source)
        return cls(prefix, np.searchsorted(feature, np.arange(n_features + 1)), columns)

    @classmethod
    def from_lengths(cls, prefix: str, feature: np.ndarray, lengths: np.ndarray, n_features: int,
                     columns: dict) -> "ByFeature":
        """One list per row of `feature` (sorted, each feature at most once), values back to back."""
        per = np.zeros(n_features, dtype=np.int64)
        per[feature] = lengths
        return cls(prefix, np.concatenate([[0], np.cumsum(per)]), columns)

    def arrays(self, first: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """The rows of features first..stop-1 as blob arrays, offsets counted from `first`."""
        stop = self.ptr.size - 1 if stop is None else stop
        lo, hi = self.ptr[first], self.ptr[stop]
        out = {f"{self.prefix}.ptr": smallest_uint(self.ptr[first : stop + 1] - lo)}
        out.update({name: values[lo:hi] for name, values in self.columns.items()})
        return out


class Strings:
    """The page's table of token strings; ids of values not yet in it are appended."""

    def __init__(self, table: pa.Array):
        self.table = table

    def ids(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        values = values.cast(self.table.type)
        at = pc.index_in(values, value_set=self.table)
        if at.null_count:
            new = pc.unique(pc.filter(values, pc.is_null(at)))
            self.table = pa.concat_arrays([self.table, new])
            at = pc.index_in(values, value_set=self.table)
        return at.to_numpy().astype(np.int64)
