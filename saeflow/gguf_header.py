"""Read a GGUF file's scalar metadata without loading its tensors or vocabulary.

The workflow needs a GGUF model's width and depth while it plans, before the conversion job has
run; the `gguf` package's reader parses every field, the 49k-string vocabulary included, which
takes seconds. This walks the key/value section once and keeps only scalars.
"""

from __future__ import annotations

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


def read_metadata(path: str | Path, enough: Callable[[dict], bool] = lambda metadata: False) -> dict:
    """The scalar and string keys of the GGUF file at `path` (arrays are skipped), all of them, or
    those read until `enough(metadata)` holds (the vocabulary comes after the model's shape)."""
    metadata = {}
    try:
        with open(path, "rb") as stream:
            if stream.read(4) != _MAGIC:
                raise ValueError("not a GGUF file (bad magic)")
            _read(stream, "<I")  # version
            _read(stream, "<Q")  # tensor count
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
    except (OSError, EOFError, ValueError) as err:
        reason = "truncated" if isinstance(err, EOFError) else str(err)
        raise SaeflowError(f"model.path: {path} is not a readable GGUF file ({reason}); point model.path "
                           "at a complete .gguf file or a Hugging Face model directory") from None
    return metadata
