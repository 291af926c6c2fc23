"""The dashboard's data container: a JSON header and flat typed arrays, gzipped, base64 text.

Layout before gzip: a little-endian uint32 header length, the UTF-8 JSON header
`{"json": payload, "arrays": [{"name", "dtype", "offset", "length"}]}`, then the arrays' bytes
back to back (offsets count from the end of the header). Arrays wider
than a byte are stored byte-shuffled (byte 0 of every element, then byte 1, ...), as Blosc does:
high bytes of small ints and float exponents repeat, and gzip finds that only when they are
adjacent. The page undoes it with `unpack` in dashboard.js; `unpack` here is its oracle.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct

import numpy as np

# Names the JS decoder knows; float16 stays raw bits there and is widened per example on demand.
DTYPES = {"u1": np.uint8, "u2": np.uint16, "u4": np.uint32, "i4": np.int32, "f2": np.float16, "f4": np.float32}


def smallest_uint(values: np.ndarray) -> np.ndarray:
    """The values as the narrowest unsigned dtype that holds them (ids, counts, offsets)."""
    values = np.asarray(values)
    top = int(values.max()) if values.size else 0
    if values.size and int(values.min()) < 0:
        raise ValueError("smallest_uint needs non-negative values")
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return values.astype(dtype)
    raise ValueError(f"value {top} does not fit in uint32")


def compact_floats(values: np.ndarray) -> np.ndarray:
    """float16 when every finite value survives the cast (activations for display), else float32."""
    values = np.asarray(values, dtype=np.float32)
    with np.errstate(over="ignore"):  # overflow is the case checked for
        half = values.astype(np.float16)
    return half if np.array_equal(np.isfinite(half), np.isfinite(values)) else values


def _code(array: np.ndarray) -> str:
    for code, dtype in DTYPES.items():
        if array.dtype == dtype:
            return code
    raise TypeError(f"unsupported dtype {array.dtype} (use one of {sorted(DTYPES)})")


def _shuffle(array: np.ndarray) -> bytes:
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return raw.view(np.uint8).reshape(-1, array.itemsize).T.tobytes()


def _unshuffle(data: bytes, dtype: np.dtype, length: int) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8).reshape(dtype.itemsize, length)
    return planes.T.copy().view(dtype.newbyteorder("<")).reshape(length)


def pack(payload, arrays: dict[str, np.ndarray]) -> bytes:
    """Gzipped container of a JSON-able payload and 1-D arrays of the DTYPES."""
    entries, parts, offset = [], [], 0
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.ndim != 1:
            raise ValueError(f"array {name!r} must be 1-D")
        data = _shuffle(array)
        entries.append({"name": name, "dtype": _code(array), "offset": offset, "length": int(array.size)})
        parts.append(data)
        offset += len(data)
    header = json.dumps({"json": payload, "arrays": entries}, allow_nan=False, separators=(",", ":")).encode()
    # mtime=0 keeps the output byte-identical across builds of the same data.
    return gzip.compress(struct.pack("<I", len(header)) + header + b"".join(parts), compresslevel=6, mtime=0)


def unpack(blob: bytes) -> tuple[object, dict[str, np.ndarray]]:
    """Inverse of pack: (payload, {name: array})."""
    raw = gzip.decompress(blob)
    (size,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4 : 4 + size])
    data = raw[4 + size :]
    arrays = {}
    for entry in header["arrays"]:
        dtype = np.dtype(DTYPES[entry["dtype"]])
        start, length = entry["offset"], entry["length"]
        arrays[entry["name"]] = _unshuffle(data[start : start + length * dtype.itemsize], dtype, length)
    return header["json"], arrays


def to_text(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def from_text(text: str) -> bytes:
    return base64.b64decode(text)
