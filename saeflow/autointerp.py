"""Auto-interp hook: per feature, the chat prompt an LLM labeller gets, and (only when an
OpenAI-compatible endpoint is configured) the labels it returns.

Prompts come from `top_examples.parquet` and `quantile_examples.parquet`, streamed in batches:
both tables are sorted by feature, so one feature's rows are contiguous and a merge walks them in
step, keeping only the examples the prompts show. Each excerpt is the document's text as written,
rebuilt from the corpus tables (see window_text.py), read once for all of them. Labelling sends
one chat-completions request per feature, sequentially, and keeps going past a failed feature; it
gives up only when the endpoint looks unreachable or misconfigured.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from saeflow import storage
from saeflow.errors import SaeflowError
from saeflow.window_text import window_pieces

log = logging.getLogger(__name__)

EXAMPLE_COLUMNS = ["feature", "rank", "activation", "seq", "pos", "acts"]
LABEL_SCHEMA = pa.schema([("feature", pa.int64()), ("label", pa.string()), ("model", pa.string()),
                          ("error", pa.string())])
MAX_LABEL_WORDS = 8
SYSTEM_PROMPT = (
    "You label the features of a sparse autoencoder trained on a language model's activations. "
    "You see text excerpts on which one feature fires. Each excerpt follows a header line "
    "'Excerpt N (activation A):', A being the feature's activation at the token where it is "
    "strongest, and is the text exactly as written, line breaks included, with that token marked "
    "<< >>. Special tokens the model sees besides the text (such as [CLS], [SEP] or a BOS) appear "
    "as their token strings. "
    f"Answer with a short label of at most {MAX_LABEL_WORDS} words saying what the feature detects, "
    "and nothing else."
)


# ---------------------------------------------------------------- prompts


def _feature_rows(path, columns: list[str], batch_rows: int) -> Iterator[tuple[int, list[dict]]]:
    """(feature, its rows) for each feature of a table sorted by feature, one batch in memory."""
    feature, rows = None, []
    with pq.ParquetFile(path) as table:
        for batch in table.iter_batches(batch_size=batch_rows, columns=columns):
            for row in batch.to_pylist():
                if row["feature"] != feature:
                    if feature is not None and row["feature"] < feature:
                        raise SaeflowError(f"{path}: rows are not sorted by feature; rebuild it with the workflow")
                    if rows:
                        yield feature, rows
                    feature, rows = row["feature"], []
                rows.append(row)
    if rows:
        yield feature, rows


def feature_examples(top_path, quantile_path, batch_rows: int = 4096) -> Iterator[tuple[int, list[dict], list[dict]]]:
    """(feature, top rows, quantile rows) for every feature with top examples, streaming both tables."""
    quantiles = _feature_rows(quantile_path, EXAMPLE_COLUMNS + ["band"], batch_rows)
    pending = next(quantiles, None)
    for feature, top in _feature_rows(top_path, EXAMPLE_COLUMNS, batch_rows):
        while pending is not None and pending[0] < feature:
            pending = next(quantiles, None)
        banded = pending[1] if pending is not None and pending[0] == feature else []
        yield feature, top, banded


def spread_over_bands(rows: list[dict], cap: int) -> list[dict]:
    """Up to `cap` quantile rows, strongest band first, spread over the bands.

    Each round takes the next-ranked row of every band; a round that would overflow the cap takes
    evenly spaced bands instead, so even a small cap spans weak to strong activations.
    """
    by_band: dict[int, list[dict]] = {}
    for row in sorted(rows, key=lambda row: (-row["band"], row["rank"])):
        by_band.setdefault(row["band"], []).append(row)
    picked: list[dict] = []
    for depth in range(max(map(len, by_band.values()), default=0)):
        layer = [band_rows[depth] for band_rows in by_band.values() if depth < len(band_rows)]
        room = cap - len(picked)
        if len(layer) > room:
            # Steps of at least 1 (room < len(layer)), so the indices are distinct.
            layer = [layer[i * (len(layer) - 1) // max(room - 1, 1)] for i in range(room)]
        picked += layer
    return sorted(picked, key=lambda row: (-row["band"], row["rank"]))


def excerpt(pieces: list[str], at: int) -> str:
    """A window's text from its token pieces, the piece of token `at` marked << >> (the whitespace
    before its text left outside the marks)."""
    piece = pieces[at]
    text = piece.lstrip() or piece
    return "".join(pieces[:at]) + f"{piece[: len(piece) - len(text)]}<<{text}>>" + "".join(pieces[at + 1 :])


def prompt_messages(top: list[dict], banded: list[dict]) -> list[dict]:
    """Chat-completions messages asking for one feature's label; each row carries its `excerpt`."""
    lines = ["Excerpts where the feature fires most strongly:"]
    lines += [f"Excerpt {n} (activation {row['activation']:.3g}):\n{row['excerpt']}" for n, row in enumerate(top, 1)]
    if banded:
        lines += ["", "Excerpts sampled across its activation range (band 0 is the weakest):"]
        lines += [f"Excerpt {n} (band {row['band']}, activation {row['activation']:.3g}):\n{row['excerpt']}"
                  for n, row in enumerate(banded, len(top) + 1)]
    lines += ["", f"Label this feature in at most {MAX_LABEL_WORDS} words."]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


def _add_excerpts(features: list[tuple[int, list[dict], list[dict]]], tokens_path, documents_path) -> None:
    """Give every row its `excerpt`, the text of all windows read from the corpus tables at once.

    A row's window holds pos and the tokens around it, and pos is its first token at the max, so
    the window starts at pos − (first argmax of its acts), as the dashboard finds it too.
    """
    rows = [row for _, top, banded in features for row in (*top, *banded)]
    if not rows:
        return
    at = [int(np.argmax(row["acts"])) for row in rows]
    length = np.array([len(row["acts"]) for row in rows], dtype=np.int64)
    pieces, _ = window_pieces(tokens_path, documents_path, [row["seq"] for row in rows],
                              [row["pos"] - a for row, a in zip(rows, at)], length)
    first = np.concatenate([[0], np.cumsum(length)]).tolist()
    for i, row in enumerate(rows):
        row["excerpt"] = excerpt(pieces[first[i] : first[i + 1]].to_pylist(), at[i])


def write_prompts(top_path, quantile_path, tokens_path, documents_path, out_path, examples: int,
                  quantile_examples: int) -> int:
    """autointerp_prompts.jsonl: one {"feature", "messages"} line per feature with top examples."""
    features = [(feature, sorted(top, key=lambda row: row["rank"])[:examples],
                 spread_over_bands(banded, quantile_examples))
                for feature, top, banded in feature_examples(top_path, quantile_path)]
    _add_excerpts(features, tokens_path, documents_path)
    with storage.atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as out:
        for feature, top, banded in features:
            # ensure_ascii=False keeps corpus text readable; JSON escaping alone keeps each record one line.
            out.write(json.dumps({"feature": feature, "messages": prompt_messages(top, banded)},
                                 ensure_ascii=False) + "\n")
    log.info("wrote prompts for %d features", len(features))
    return len(features)


def count_prompts(path, max_features: int | None = None) -> int:
    """How many prompts labelling will send (for the progress bar)."""
    with open(path, encoding="utf-8") as lines:
        n = sum(1 for _ in lines)
    return n if max_features is None else min(n, max_features)


def read_prompts(path) -> Iterator[dict]:
    """The records of autointerp_prompts.jsonl, one line at a time."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


# ---------------------------------------------------------------- labels


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask: an OpenAI-compatible base URL (…/v1) and the request settings."""

    url: str
    model: str
    api_key: str | None = None
    temperature: float = 0.0
    max_tokens: int = 60
    timeout_s: float = 60.0
    retry_delays_s: tuple[float, ...] = (1.0, 4.0)  # one sleep per retry of a 429 / 5xx answer


class RequestError(Exception):
    """One feature's request failed; `unreachable` when no HTTP answer came back at all."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def endpoint_from_config(settings: Mapping, environ: Mapping[str, str] = os.environ) -> Endpoint:
    """The endpoint of the `autointerp` config section; the key comes from the environment only,
    so it never lands in the workflow's params or metadata."""
    if not settings["endpoint"]:
        raise SaeflowError("autointerp.endpoint: not set; give the base URL of an OpenAI-compatible API "
                           "(e.g. http://127.0.0.1:8000/v1) to request labels")
    if not settings["model"]:
        raise SaeflowError("autointerp.model: not set; give the model name the server at autointerp.endpoint serves")
    key_env = settings["api_key_env"]
    return Endpoint(url=settings["endpoint"], model=settings["model"],
                    api_key=environ.get(key_env) if key_env else None, temperature=settings["temperature"],
                    max_tokens=settings["max_tokens"], timeout_s=settings["timeout_s"])


def _reply_text(raw: bytes) -> str:
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, LookupError, TypeError) as err:
        raise RequestError(f"unexpected reply ({err!r}): {raw[:200]!r}") from None
    if not isinstance(content, str) or not content.strip():
        raise RequestError(f"reply has no label: {raw[:200]!r}")
    return content.strip()


def request_label(endpoint: Endpoint, messages: list[dict]) -> str:
    """POST {url}/chat/completions and return the stripped reply; retries 429 and 5xx answers."""
    body = json.dumps({"model": endpoint.model, "messages": messages, "temperature": endpoint.temperature,
                       "max_tokens": endpoint.max_tokens}).encode()
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    request = urllib.request.Request(endpoint.url.rstrip("/") + "/chat/completions", data=body,
                                     headers=headers, method="POST")
    for delay in (*endpoint.retry_delays_s, None):
        try:
            with urllib.request.urlopen(request, timeout=endpoint.timeout_s) as response:
                return _reply_text(response.read())
        except urllib.error.HTTPError as err:  # an answer, but not a success (caught before URLError, its base)
            retryable = err.code == 429 or err.code >= 500
            if delay is None or not retryable:
                raise RequestError(f"HTTP {err.code} {err.reason}: {err.read()[:200]!r}") from None
        except (OSError, http.client.HTTPException) as err:  # refused, DNS, timeout, dropped connection
            raise RequestError(f"no answer ({getattr(err, 'reason', err)})", unreachable=True) from None
        time.sleep(delay)  # the last attempt (delay None) has returned or raised


def label_features(prompts_path, out_path, endpoint: Endpoint, max_features: int | None = None,
                   give_up_after: int = 3, progress=None) -> pa.Table:
    """llm_labels.parquet: one row per prompt (the first `max_features`), error null on success.

    A failed feature is recorded and skipped. `give_up_after` failures in a row with no answer at
    all, or before any success, mean the endpoint is down or misconfigured: stop with one error
    and write nothing, rather than a table of identical errors.
    """
    rows: dict[str, list] = {"feature": [], "label": [], "error": []}
    failures = unanswered = 0
    answered = False
    for record in itertools.islice(read_prompts(prompts_path), max_features):
        try:
            label, error = request_label(endpoint, record["messages"]), None
            failures = unanswered = 0
            answered = True
        except RequestError as err:
            label, error = None, str(err)
            failures += 1
            unanswered = unanswered + 1 if err.unreachable else 0
            if unanswered >= give_up_after or (not answered and failures >= give_up_after):
                raise SaeflowError(
                    f"autointerp.endpoint {endpoint.url}: {failures} requests in a row failed (last: {err}); "
                    "start the server or fix autointerp.endpoint, autointerp.model or the key in the "
                    "variable named by autointerp.api_key_env; no labels were written"
                ) from None
            log.warning("feature %d: %s", record["feature"], error)
        rows["feature"].append(record["feature"])
        rows["label"].append(label)
        rows["error"].append(error)
        if progress is not None:
            progress.update(1)
    table = pa.table({**rows, "model": [endpoint.model] * len(rows["feature"])}, schema=LABEL_SCHEMA)
    storage.write_table(out_path, table)
    log.info("labelled %d features (%d failed) with %s at %s", table.num_rows,
             sum(error is not None for error in rows["error"]), endpoint.model, endpoint.url)
    return table
