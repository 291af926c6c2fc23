"""Artifact I/O in one place: atomic writes, Zarr chunk stores, Parquet tables, safetensors.

Every writer here makes its artifact appear whole or not at all: it writes under a temporary
name beside the target and renames at the end, so a killed job never leaves a file that looks
complete.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from safetensors import SafetensorError
from safetensors.numpy import load_file as _load_safetensors
from safetensors.numpy import save as _safetensors_bytes
from zarr.codecs import BloscCodec
from zarr.codecs.numcodecs import Delta

from saeflow import faults
from saeflow.errors import SaeflowError

# Our stores use numcodecs filters (delta) that zarr-python reads; other Zarr implementations
# may not, which zarr warns about on every array: once in the docs is enough.
warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_sibling(target: Path, is_dir: bool) -> Path:
    prefix = f".{target.name}.tmp-"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A killed job's temporary sibling stays behind; Snakemake never runs two jobs for one
        # output, so any sibling found now is such debris.
        for debris in target.parent.glob(f"{glob.escape(prefix)}*"):
            _remove(debris)
        if is_dir:
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
            os.close(fd)
            path = Path(name)
    except PermissionError as err:
        raise SaeflowError(f"{err.filename or target.parent}: not writable by this user; make the results "
                           "folder writable (chmod u+w) or run the workflow from a folder you own") from None
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
        faults.kill_point(target)
        _remove(target)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


# The fix for a damaged pipeline artifact: every artifact is rebuilt from its inputs.
REBUILD = "delete it and rerun the workflow to rebuild it"


def damaged(path, problem: str, fix: str = REBUILD) -> SaeflowError:
    """The one error for an artifact that breaks the contract: the file, what is wrong, the fix."""
    return SaeflowError(f"{path}: {problem}; {fix}")


def _require_file(path, fix: str = REBUILD) -> None:
    if not Path(path).is_file():
        raise SaeflowError(f"{path}: file not found; {'build it with the workflow first' if fix == REBUILD else fix}")


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, keys: tuple[str, ...] = (), fix: str = REBUILD):
    """A JSON file; with `keys`, an object that must hold them."""
    _require_file(path, fix)
    try:
        obj = json.loads(Path(path).read_text())
    except UnicodeDecodeError:
        raise damaged(path, "not UTF-8 text, so not JSON", fix) from None
    except json.JSONDecodeError as err:
        raise damaged(path, f"not valid JSON ({err.msg} at line {err.lineno})", fix) from None
    if keys and not isinstance(obj, dict):
        raise damaged(path, f"holds a JSON {type(obj).__name__}, not an object with {list(keys)}", fix)
    if missing := [key for key in keys if key not in obj]:
        raise damaged(path, f"lacks key(s) {missing}", fix)
    return obj


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


def nullable_floats(values) -> pa.Array:
    """float64 Arrow values with NaN written as null (tables hold nulls, never NaN)."""
    values = np.asarray(values, dtype=np.float64)
    return pa.array(values, mask=np.isnan(values))


def write_parquet(path: str | os.PathLike, columns: dict, schema: pa.Schema) -> None:
    with ParquetStream(path, schema) as out:
        out.write(columns)


def write_table(path: str | os.PathLike, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def concat_parquet(paths: list, out_path, sort_by: list[str] | None = None) -> pa.Table:
    """Concatenate Parquet pieces of one schema into one file (optionally sorted by columns)."""
    table = pa.concat_tables([read_parquet_table(path) for path in paths])
    if sort_by:
        table = table.sort_by([(column, "ascending") for column in sort_by])
    write_table(out_path, table)
    return table


@contextlib.contextmanager
def parquet_errors(path, fix: str = REBUILD) -> Iterator[None]:
    """Turn Arrow's errors on a damaged file (a cut footer, a bad page) into one naming it."""
    try:
        yield
    except (pa.ArrowException, OSError) as err:
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise damaged(path, f"not a readable Parquet table ({first_line})", fix) from None


def open_parquet(path: str | os.PathLike, columns=(), fix: str = REBUILD) -> pq.ParquetFile:
    """A Parquet table opened for reading: its footer parsed and `columns` checked present."""
    _require_file(path, fix)
    with parquet_errors(path, fix):
        parquet = pq.ParquetFile(path)
    if missing := [name for name in columns if name not in parquet.schema_arrow.names]:
        raise damaged(path, f"no column {missing}", fix)
    return parquet


def read_parquet_table(path: str | os.PathLike, columns: list[str] | None = None, filters=None,
                       fix: str = REBUILD) -> pa.Table:
    """A Parquet table (or its `columns`, rows matching `filters`), checked as open_parquet does."""
    with open_parquet(path, columns or (), fix), parquet_errors(path, fix):
        return pq.read_table(path, columns=columns, filters=filters)


def read_parquet_columns(path: str | os.PathLike, columns: list[str]) -> dict[str, np.ndarray]:
    table = read_parquet_table(path, columns)
    return {name: table.column(name).to_numpy() for name in columns}


def iter_parquet_batches(path: str | os.PathLike, columns: list[str], batch_rows: int = 1 << 20):
    """Stream a Parquet file's columns as numpy arrays, `batch_rows` rows at a time."""
    with open_parquet(path, columns) as parquet, parquet_errors(path):
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


def open_zarr_group(path: str | os.PathLike, attrs: tuple[str, ...] = (), arrays: tuple[str, ...] = ()) -> zarr.Group:
    """Open a finished Zarr store read-only, with one clear error when it is missing or corrupt,
    or lacks the integer `attrs` or the `arrays` the contract gives it."""
    if not Path(path).is_dir():
        raise SaeflowError(f"{path}: Zarr store not found; build it with the workflow first")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as err:  # zarr raises several types for damaged metadata
        raise damaged(path, f"not a readable Zarr store ({err})") from None
    check_group(path, group, attrs, arrays)
    return group


def check_group(path, group: zarr.Group, attrs: tuple[str, ...] = (), arrays: tuple[str, ...] = ()) -> None:
    """The group holds the integer `attrs` and the `arrays`, and no array's chunk file is cut short."""
    try:
        present = {name: group[name] for name in group.array_keys()}
    except Exception as err:  # an array's metadata is damaged
        raise damaged(path, f"not a readable Zarr store ({err})") from None
    if missing := [name for name in arrays if name not in present]:
        raise damaged(path, f"no array(s) {missing}")
    for name, array in present.items():
        if problem := _cut_chunk_file(Path(path), array):
            raise damaged(path, f"array {name!r}: {problem}")
    for name in attrs:
        value = group.attrs.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise damaged(path, f"attribute {name!r} is {value!r}, not a count >= 0")


def _cut_chunk_file(path: Path, array: zarr.Array) -> str | None:
    """A chunk file shorter than its Blosc header says, or None. Blosc decodes a cut frame
    without complaint (into garbage or zeros), so the length is checked before any read."""
    if not any(isinstance(codec, BloscCodec) for codec in array.compressors):
        return None
    for chunk_file in (path / array.basename / "c").rglob("*"):
        if chunk_file.is_file():
            with chunk_file.open("rb") as handle:
                header = handle.read(16)  # bytes 12..15: the frame's compressed size
            size, expected = chunk_file.stat().st_size, int.from_bytes(header[12:16], "little")
            if len(header) < 16 or size != expected:
                return f"chunk file {chunk_file.relative_to(path)} holds {size} of its {expected} bytes"
    return None


def read_zarr_array(group: zarr.Group, name: str, rows: slice = slice(None)) -> np.ndarray:
    """Read rows of an array, naming the store when its data is damaged."""
    try:
        return group[name][rows]
    except Exception as err:
        raise damaged(getattr(group.store, "root", group.store), f"array {name!r} unreadable ({err})") from None


# ---------------------------------------------------------------- CSR feature chunks

# Entries per Zarr chunk of a CSR chunk's `indices` and `values` (about 8,192 tokens at L0 32).
CSR_ENTRIES_PER_CHUNK = 1 << 18


@dataclass(frozen=True)
class SparseChunk:
    """One CSR feature chunk: token t's entries are indptr[t] .. indptr[t+1]-1, ids ascending."""

    indptr: np.ndarray  # [n_tokens + 1] int64, from 0
    indices: np.ndarray  # [nnz] int32 feature ids
    values: np.ndarray  # [nnz] float32 (a float16 store is widened)
    token_start: int
    n_features: int
    value_dtype: np.dtype  # the dtype the values are stored in

    @property
    def n_tokens(self) -> int:
        return len(self.indptr) - 1

    def entry_rows(self) -> np.ndarray:
        """The chunk row (token_start-relative token) of each entry, int64."""
        return np.repeat(np.arange(self.n_tokens, dtype=np.int64), np.diff(self.indptr))


def read_sparse_chunk(path, n_features: int | None = None) -> SparseChunk:
    """A CSR feature chunk (features/ or units/filtered/), its invariants checked; with
    `n_features`, also that the chunk has that many features (the SAE's d_sae)."""
    group = open_zarr_group(path)
    if group.attrs.get("format") != "csr":  # before the rest: an old store of another format says only this
        raise damaged(path, f"format {group.attrs.get('format')!r} is not \"csr\"")
    check_group(path, group, attrs=("n_features", "n_tokens", "token_start"), arrays=("indptr", "indices", "values"))
    chunk = SparseChunk(
        indptr=read_zarr_array(group, "indptr"),
        indices=read_zarr_array(group, "indices"),
        values=read_zarr_array(group, "values").astype(np.float32),
        token_start=int(group.attrs["token_start"]),
        n_features=int(group.attrs["n_features"]),
        value_dtype=group["values"].dtype,
    )
    if n_features is not None and chunk.n_features != n_features:
        raise damaged(path, f"n_features is {chunk.n_features} but {n_features} were expected")
    if problem := _csr_problem(chunk, int(group.attrs["n_tokens"])):
        raise damaged(path, f"corrupt CSR chunk ({problem})")
    return chunk


def _csr_problem(chunk: SparseChunk, n_tokens: int) -> str | None:
    """What breaks the CSR invariants, or None."""
    indptr, nnz = chunk.indptr, len(chunk.indices)
    if len(indptr) != n_tokens + 1:
        return f"indptr has {len(indptr)} entries for n_tokens {n_tokens}"
    if indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != nnz or len(chunk.values) != nnz:
        return f"indptr must rise from 0 to the {nnz} indices (and values: {len(chunk.values)})"
    if nnz and not (0 <= chunk.indices.min() and chunk.indices.max() < chunk.n_features):
        return f"feature ids span {chunk.indices.min()}..{chunk.indices.max()}, n_features is {chunk.n_features}"
    if not np.isfinite(chunk.values).all():
        return f"value of entry {int(np.flatnonzero(~np.isfinite(chunk.values))[0])} is NaN or inf"
    return None


class _AppendedArray:
    """A 1-D Zarr array filled front to back. It is written in whole Zarr chunks (the rest waits
    for the next append, or the end), so no chunk is compressed twice."""

    def __init__(self, writer: ZarrChunkWriter, name: str, dtype, filters=()):
        self.array = writer.create(name, (CSR_ENTRIES_PER_CHUNK,), dtype, CSR_ENTRIES_PER_CHUNK, filters)
        self.array.resize((0,))  # created one chunk long only to fix the chunk size
        self._pending = [np.zeros(0, dtype=dtype)]
        self._n_pending = 0

    def extend(self, data: np.ndarray) -> None:
        self._pending.append(data)
        self._n_pending += len(data)
        if self._n_pending >= CSR_ENTRIES_PER_CHUNK:
            self._write(self._n_pending // CSR_ENTRIES_PER_CHUNK * CSR_ENTRIES_PER_CHUNK)

    def finish(self) -> None:
        self._write(self._n_pending)

    def _write(self, n: int) -> None:
        data = np.concatenate(self._pending)
        if n:
            self.array.append(data[:n])
        self._pending, self._n_pending = [data[n:]], len(data) - n


class CsrChunkWriter:
    """Write one CSR feature chunk a block of tokens at a time; it appears atomically on close.

    nnz is known only at the end, so `indices` and `values` grow; `indptr` (8 bytes a token) is
    held and written on close. Delta filters: sorted ids and indptr become small steps for zstd.
    """

    def __init__(self, path, n_tokens: int, n_features: int, token_start: int, value_dtype,
                 attrs: dict | None = None):
        self._writer = ZarrChunkWriter(path, {**(attrs or {}), "format": "csr", "n_features": int(n_features),
                                              "n_tokens": int(n_tokens), "token_start": int(token_start)})
        self._path, self._n_tokens = path, n_tokens
        self._indices = _AppendedArray(self._writer, "indices", "int32", [Delta(dtype="int32")])
        self._values = _AppendedArray(self._writer, "values", value_dtype)
        self._row_counts: list[np.ndarray] = []
        self.nnz = 0

    def append(self, row_counts: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
        """The next len(row_counts) tokens: their entries, token by token, ids ascending."""
        self._row_counts.append(np.asarray(row_counts, dtype=np.int64))
        self._indices.extend(np.asarray(indices, dtype=np.int32))
        self._values.extend(np.asarray(values, dtype=self._values.array.dtype))
        self.nnz += len(indices)

    def __enter__(self) -> "CsrChunkWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as err:
                self._writer.__exit__(type(err), err, err.__traceback__)
                raise
        self._writer.__exit__(exc_type, exc, tb)

    def _finish(self) -> None:
        counts = np.concatenate(self._row_counts) if self._row_counts else np.zeros(0, dtype=np.int64)
        indptr = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        if len(indptr) != self._n_tokens + 1 or indptr[-1] != self.nnz:
            raise SaeflowError(f"{self._path}: {len(indptr) - 1} tokens with {indptr[-1]} entries "
                               f"written, {self._n_tokens} tokens with {self.nnz} entries expected")
        self._indices.finish()
        self._values.finish()
        self._writer.create("indptr", indptr.shape, "int64", filters=[Delta(dtype="int64")])[:] = indptr


# ---------------------------------------------------------------- safetensors


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict) -> None:
    # safetensors' numpy writer needs contiguous arrays; metadata values must be strings.
    arrays = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    raw = _safetensors_bytes(arrays, metadata={k: str(v) for k, v in metadata.items()})
    # The writer keeps the metadata in a hash map, whose order changes from process to process:
    # the header is rewritten sorted (same content, same length) so two runs give the same bytes.
    size = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8:8 + size]), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(header) <= size:  # serde_json writes it just as compactly; the padding is spaces, as the format allows
        raw = raw[:8] + header.ljust(size) + raw[8 + size:]
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)


def read_safetensors(path: str | os.PathLike, shapes: dict[str, tuple] | None = None, dtype="float32",
                     fix: str = REBUILD) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file. With `shapes` ({name: shape}, None for a size that may
    be anything), each named tensor must be there with that shape, in `dtype` (None: any) and
    finite; `fix` is what the error tells the user to do."""
    _require_file(path, fix)
    try:
        arrays = _load_safetensors(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as err:  # a cut or garbled file, an odd dtype
        raise damaged(path, f"not a readable safetensors file ({err})", fix) from None
    check_tensors(path, arrays, shapes or {}, dtype, fix)
    return arrays


def check_tensors(path, arrays: dict[str, np.ndarray], shapes: dict[str, tuple], dtype="float32",
                  fix: str = REBUILD) -> None:
    """Each tensor named in `shapes` is in `arrays` with that shape (None: any size), in `dtype`
    (None: any) and finite; else an error naming `path`, the tensor and `fix`."""
    for name, shape in shapes.items():
        if problem := _tensor_problem(arrays.get(name), shape, dtype):
            raise damaged(path, f"tensor `{name}` {problem}", fix)


def _tensor_problem(array: np.ndarray | None, shape: tuple, dtype) -> str | None:
    """What makes `array` not a finite tensor of `shape` and `dtype`, or None."""
    if array is None:
        return "is missing"
    if len(array.shape) != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        return f"has shape {list(array.shape)}, but {['any' if n is None else n for n in shape]} is needed"
    if dtype is not None and array.dtype != dtype:
        return f"has dtype {array.dtype}, not {dtype}"
    if not np.isfinite(array).all():
        return "holds NaN or inf"
    return None
