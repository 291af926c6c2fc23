"""Read a GGUF file's scalar metadata without loading its tensors or vocabulary.

The workflow needs a GGUF model's width and depth while it plans, before the conversion job has
run; the `gguf` package's reader parses every field, the 49k-string vocabulary included, which
takes seconds. This walks the key/value section once and keeps only scalars; the conversion jobs
also check, from the tensor infos, that the file holds all its tensor data (not cut short).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from pathlib import Path
from typing import BinaryIO, Callable

from saeflow.errors import SaeflowError

_MAGIC = b"GGUF"
# GGUF value types: id -> struct format of one scalar; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def _read(stream: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return struct.unpack(fmt, data)[0]


def _read_string(stream: BinaryIO) -> str:
    length = _read(stream, "<Q")
    data = stream.read(length)
    if len(data) != length:
        raise EOFError
    return data.decode("utf-8", errors="replace")


def _skip_array(stream: BinaryIO) -> None:
    item_type, count = _read(stream, "<I"), _read(stream, "<Q")
    if item_type == _STRING:
        for _ in range(count):
            stream.seek(_read(stream, "<Q"), 1)
    elif item_type in _SCALARS:
        stream.seek(count * struct.calcsize(_SCALARS[item_type]), 1)
    else:
        raise ValueError(f"array of value type {item_type}")


def _read_pairs(stream: BinaryIO, enough: Callable[[dict], bool]) -> tuple[dict, int]:
    """(the scalar and string keys read until `enough` holds, the tensor count), from the start."""
    if stream.read(4) != _MAGIC:
        raise ValueError("not a GGUF file (bad magic)")
    _read(stream, "<I")  # version
    n_tensors = _read(stream, "<Q")
    metadata = {}
    for _ in range(_read(stream, "<Q")):
        key, value_type = _read_string(stream), _read(stream, "<I")
        if value_type == _STRING:
            metadata[key] = _read_string(stream)
        elif value_type == _ARRAY:
            _skip_array(stream)
        elif value_type in _SCALARS:
            metadata[key] = _read(stream, _SCALARS[value_type])
        else:
            raise ValueError(f"unknown value type {value_type} at key {key!r}")
        if enough(metadata):
            break
    return metadata, n_tensors


def _data_end(stream: BinaryIO, metadata: dict, n_tensors: int) -> int:
    """Where the last tensor's data ends, read off the tensor infos that follow the keys."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    end = 0
    for _ in range(n_tensors):
        _read_string(stream)  # name
        dims = [_read(stream, "<Q") for _ in range(_read(stream, "<I"))]
        kind, offset = _read(stream, "<I"), _read(stream, "<Q")
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        end = max(end, offset + math.prod(dims) // block * size)
    alignment = int(metadata.get("general.alignment", 32))
    return -(-stream.tell() // alignment) * alignment + end


@contextlib.contextmanager
def _reading(path: str | Path):
    """One clear error for a file that is missing, cut short or not GGUF at all."""
    try:
        with open(path, "rb") as stream:
            yield stream
    except (OSError, EOFError, ValueError, KeyError) as err:
        reason = "truncated" if isinstance(err, EOFError) else str(err)
        raise SaeflowError(f"model.path: {path} is not a readable GGUF file ({reason}); point model.path "
                           "at a complete .gguf file or a Hugging Face model directory") from None


def read_metadata(path: str | Path, enough: Callable[[dict], bool] = lambda metadata: False) -> dict:
    """The scalar and string keys of the GGUF file at `path` (arrays are skipped), all of them, or
    those read until `enough(metadata)` holds (the vocabulary comes after the model's shape)."""
    with _reading(path) as stream:
        return _read_pairs(stream, enough)[0]


def check_complete(path: str | Path) -> None:
    """Refuse a file cut short anywhere, tensor data included, before transformers reads it
    (which fails on one with a bare struct or numpy error)."""
    with _reading(path) as stream:
        metadata, n_tensors = _read_pairs(stream, lambda metadata: False)
        if _data_end(stream, metadata, n_tensors) > os.fstat(stream.fileno()).st_size:
            raise EOFError
