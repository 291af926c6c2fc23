"""What the workflow learns about the corpus while it plans, before anything is tokenised: its
size in bytes (which fixes the number of chunks) and whether it has a labels or spans field (which
decides whether concept detection is planned). Reads file sizes and, at most, scans JSONL lines
or Parquet footers; pyarrow is imported only for a Parquet corpus, since planning runs this."""

from __future__ import annotations

import json
from pathlib import Path

from saeflow.corpus import format_of, not_parquet


def estimated_bytes(paths: list[str], fmt: str, max_documents: int | None) -> int:
    """The corpus's size in bytes, read off the file system (the built-in corpus: its text), for
    planning before anything is tokenised; with `max_documents`, the share those documents take."""
    if not paths:
        from pydoc_data.topics import topics

        sizes = [len(topics[name].encode()) for name in sorted(topics)]
        return sum(sizes[:max_documents])
    if max_documents is None:
        return sum(Path(path).stat().st_size for path in paths)
    total, left = 0, max_documents
    for path in paths:
        if left <= 0:
            break
        size, kind = Path(path).stat().st_size, format_of(path, fmt)
        rows = 1 if kind == "text" else _row_count(path, kind)
        taken = min(rows, left)
        total += size * taken // max(rows, 1)
        left -= taken
    return total


def _row_count(path: str, kind: str) -> int:
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception as err:
            raise not_parquet(path, err) from None
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b"")) + 1


def has_field(paths: list[str], fmt: str, field: str | None) -> bool:
    """Whether the corpus has this field, e.g. its labels or spans (a Parquet column, or a key of
    some JSONL record): decided while the workflow plans, so concept detection is planned only
    where it applies."""
    if not field:
        return False
    for path in paths:
        kind = format_of(path, fmt)
        if kind == "parquet":
            import pyarrow.parquet as pq

            try:
                if field in pq.read_schema(path).names:
                    return True
            except Exception as err:
                raise not_parquet(path, err) from None
        elif kind == "jsonl" and _jsonl_has_key(path, field):
            return True
    return False


def _jsonl_has_key(path: str, key: str) -> bool:
    needle = json.dumps(key).encode()
    with open(path, "rb") as handle:
        for raw in handle:
            # Parse only the lines that could hold the key; a broken line is the corpus job's to report.
            if needle in raw:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict) and key in record:
                    return True
    return False
