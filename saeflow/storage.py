"""Artifact I/O in one place: atomic writes, Zarr chunk stores, Parquet tables, safetensors.

Every writer here makes its artifact appear whole or not at all: it writes under a temporary
name beside the target and renames at the end, so a killed job never leaves a file that looks
complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from safetensors.numpy import load_file as _load_safetensors
from safetensors.numpy import save_file as _save_safetensors
from zarr.codecs import BloscCodec

from saeflow.errors import SaeflowError

# Our stores use numcodecs filters (delta) that zarr-python reads; other Zarr implementations
# may not, which zarr warns about on every array: once in the docs is enough.
warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_sibling(target: Path, is_dir: bool) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    if is_dir:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
        os.close(fd)
        path = Path(name)
    # mkstemp/mkdtemp make private files; artifacts get the usual permissions instead.
    path.chmod((0o777 if is_dir else 0o666) & ~_umask())
    return path


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write into; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    tmp = _temp_sibling(target, is_dir)
    try:
        yield tmp
        _remove(target)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SaeflowError(f"{path}: file not found; build it with the workflow first") from None


# ---------------------------------------------------------------- Parquet


class ParquetStream:
    """Append record batches to a Parquet file that appears atomically on close.

    Lets a job write tables far larger than memory, one batch at a time.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema):
        self._atomic = atomic_path(path)
        self._tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")
        self.schema = schema
        self.n_rows = 0

    def write(self, columns: dict) -> None:
        table = pa.table(columns, schema=self.schema)
        self._writer.write_table(table)
        self.n_rows += table.num_rows

    def __enter__(self) -> "ParquetStream":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._writer.close()
        self._atomic.__exit__(exc_type, exc, tb)


def write_parquet(path: str | os.PathLike, columns: dict, schema: pa.Schema) -> None:
    with ParquetStream(path, schema) as out:
        out.write(columns)


def write_table(path: str | os.PathLike, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def concat_parquet(paths: list, out_path, sort_by: list[str] | None = None) -> pa.Table:
    """Concatenate Parquet pieces of one schema into one file (optionally sorted by columns)."""
    table = pa.concat_tables([pq.read_table(path) for path in paths])
    if sort_by:
        table = table.sort_by([(column, "ascending") for column in sort_by])
    write_table(out_path, table)
    return table


def read_parquet_columns(path: str | os.PathLike, columns: list[str]) -> dict[str, np.ndarray]:
    try:
        table = pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise SaeflowError(f"{path}: file not found; build it with the workflow first") from None
    return {name: table.column(name).to_numpy() for name in columns}


def iter_parquet_batches(path: str | os.PathLike, columns: list[str], batch_rows: int = 1 << 20):
    """Stream a Parquet file's columns as numpy arrays, `batch_rows` rows at a time."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        yield {name: batch.column(name).to_numpy(zero_copy_only=False) for name in columns}


# ---------------------------------------------------------------- Zarr


def _compressor(dtype: np.dtype) -> BloscCodec:
    # Byte shuffle groups the high bytes of floats, which zstd then compresses well.
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=np.dtype(dtype).itemsize)


class ZarrChunkWriter:
    """Build one Zarr group (a chunk store) under a temporary name; publish it on close.

    Arrays are created up front with their final shapes and filled by row ranges, so a job can
    stream its rows in without holding them all.
    """

    def __init__(self, path: str | os.PathLike, attrs: dict):
        self._atomic = atomic_path(path, is_dir=True)
        self._tmp = self._atomic.__enter__()
        self.group = zarr.open_group(str(self._tmp), mode="w", zarr_format=3)
        self.group.attrs.update(attrs)

    def create(self, name: str, shape: tuple, dtype, rows_per_chunk: int = 8192, filters=()) -> zarr.Array:
        rows = max(1, min(rows_per_chunk, shape[0]))
        return self.group.create_array(
            name,
            shape=shape,
            dtype=dtype,
            chunks=(rows, *shape[1:]),
            filters=list(filters),
            compressors=_compressor(dtype),
            fill_value=0,
        )

    def __enter__(self) -> "ZarrChunkWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._atomic.__exit__(exc_type, exc, tb)


def open_zarr_group(path: str | os.PathLike) -> zarr.Group:
    """Open a finished Zarr store read-only, with one clear error when it is missing or corrupt."""
    if not Path(path).is_dir():
        raise SaeflowError(f"{path}: Zarr store not found; build it with the workflow first")
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as err:  # zarr raises several types for damaged metadata
        raise SaeflowError(
            f"{path}: not a readable Zarr store ({err}); delete it and rerun the workflow to rebuild it"
        ) from None


def read_zarr_array(group: zarr.Group, name: str, rows: slice = slice(None)) -> np.ndarray:
    """Read rows of an array, naming the store when its data is damaged."""
    try:
        return group[name][rows]
    except Exception as err:
        raise SaeflowError(
            f"{group.store}: array {name!r} unreadable ({err}); delete the store and rerun the workflow"
        ) from None


def read_sparse_chunk(path) -> tuple[np.ndarray, np.ndarray, int]:
    """(indices, values widened to float32, token_start) of one sparse chunk."""
    group = open_zarr_group(path)
    indices = read_zarr_array(group, "indices")
    values = read_zarr_array(group, "values").astype(np.float32)
    return indices, values, int(group.attrs["token_start"])


# ---------------------------------------------------------------- safetensors


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict) -> None:
    # safetensors' numpy writer needs contiguous arrays; metadata values must be strings.
    arrays = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    with atomic_path(path) as tmp:
        _save_safetensors(arrays, str(tmp), metadata={k: str(v) for k, v in metadata.items()})


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise SaeflowError(f"{path}: file not found; build it with the workflow first")
    return _load_safetensors(str(path))
