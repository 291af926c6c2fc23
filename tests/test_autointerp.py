import dataclasses
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saeflow import autointerp
from saeflow.autointerp import Endpoint
from saeflow.errors import SaeflowError

CONTEXT = 3


def spaced(n, stem="w"):
    return [(" " if i else "", f"{stem}{i}") for i in range(n)]


# Corpus strings the prompt must carry as written: quotes, backslashes, control and line-separator
# characters, markup, non-ASCII; a special token first. Each token with the text before it (None:
# a special token, no part of the text).
TRICKY = [(None, "[CLS]"), ("", "say"), (" ", '"hi"'), ("\n", "<script>alert(1)</script>"), (" ", "C:\\path"),
          ("\r\t", "\u2028"), ("", "é✓")]
# The test corpus: its sequences by number, one document each.
SEQUENCES = {**{seq: spaced(20) for seq in range(12)}, 20: TRICKY, 30: spaced(10, "x"), 31: spaced(6, "y"),
             **{seq: spaced(20, "q") for seq in range(40, 50)}, **{50 + f: spaced(4, f"f{f}-") for f in range(6)}}


def write_corpus(directory):
    """tokens.parquet and documents.parquet of SEQUENCES, as tokenize_corpus would write them."""
    tokens = {name: [] for name in ("seq", "pos", "doc", "token", "special", "start", "end")}
    texts = []
    for doc, (seq, sequence) in enumerate(sorted(SEQUENCES.items())):
        text = ""
        for pos, (gap, token) in enumerate(sequence):
            if gap is not None:
                text += gap
            span = (-1, -1) if gap is None else (len(text), len(text) + len(token))
            text += "" if gap is None else token
            for name, value in zip(tokens, (seq, pos, doc, token, gap is None, *span)):
                tokens[name].append(value)
        texts.append(text)
    pq.write_table(pa.table(tokens), directory / "tokens.parquet")
    pq.write_table(pa.table({"doc": list(range(len(texts))), "text": texts}), directory / "documents.parquet")
    return directory / "tokens.parquet", directory / "documents.parquet"


def example(feature, rank, seq, pos, activation, band=None):
    """One row of the examples contract: the window pos-CONTEXT..pos+CONTEXT of a sequence of
    SEQUENCES (clipped), the max at pos, weaker activations elsewhere in the window."""
    tokens = [token for _, token in SEQUENCES[seq]]
    start, stop = max(pos - CONTEXT, 0), min(pos + CONTEXT + 1, len(tokens))
    acts = [activation / 2 if i % 2 else 0.0 for i in range(start, stop)]
    acts[pos - start] = activation
    row = {"feature": feature, "rank": rank, "activation": activation, "seq": seq, "pos": pos,
           "tokens": tokens[start:stop], "acts": acts}
    return row if band is None else {**row, "band": band}


def write_examples(path, rows, banded=False):
    fields = [("feature", pa.int64()), *([("band", pa.int32())] if banded else []), ("rank", pa.int32()),
              ("activation", pa.float32()), ("seq", pa.int32()), ("pos", pa.int32()),
              ("tokens", pa.list_(pa.string())), ("acts", pa.list_(pa.float32()))]
    # Small row groups, so a feature's rows straddle batches.
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields)), path, row_group_size=2)


def write_tables(directory, top, quantile):
    """(top, quantile, tokens, documents) paths, as write_prompts takes them."""
    write_examples(directory / "top_examples.parquet", top)
    write_examples(directory / "quantile_examples.parquet", quantile, banded=True)
    return directory / "top_examples.parquet", directory / "quantile_examples.parquet", *write_corpus(directory)


@pytest.fixture
def tables(tmp_path):
    """Features 0 and 2 are dead (no rows); 1 has 12 top examples over 5 bands; 3 and 4 a few."""
    top = [example(1, rank, seq=rank, pos=rank + 5, activation=20.0 - rank) for rank in range(12)]
    top += [example(3, 0, seq=20, pos=1, activation=4.0),  # window clipped at the start
            example(3, 1, seq=30, pos=6, activation=2.5),
            example(4, 0, seq=31, pos=5, activation=1.0)]  # clipped at the end
    quantile = [example(1, rank, seq=40 + 2 * band + rank, pos=band + 2, activation=2.0 * band + 1.5 - rank / 4,
                        band=band)
                for band in reversed(range(5)) for rank in range(2)]
    quantile += [example(3, 0, seq=30, pos=6, activation=2.5, band=1),
                 example(4, 0, seq=31, pos=5, activation=1.0, band=0)]
    return write_tables(tmp_path, top, quantile)


def write_prompts(tmp_path, tables, examples=10, quantile_examples=5):
    path = tmp_path / "autointerp_prompts.jsonl"
    autointerp.write_prompts(*tables, path, examples=examples, quantile_examples=quantile_examples)
    return path


def read_records(path):
    """The JSONL records, split on "\n" only (str.splitlines would also split on U+2028)."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def user_content(record):
    system, user = record["messages"]
    assert system == {"role": "system", "content": autointerp.SYSTEM_PROMPT}
    assert user["role"] == "user"
    return user["content"]


def user_lines(record):
    return user_content(record).split("\n")


@pytest.mark.parametrize("bands, cap, picked", [
    ([4, 3, 2, 1, 0], 3, [(4, 0), (2, 0), (0, 0)]),  # fewer than the bands: evenly spaced, both ends
    ([4, 3, 2, 1, 0], 7, [(4, 0), (4, 1), (3, 0), (2, 0), (1, 0), (0, 0), (0, 1)]),
    ([4, 3, 2, 1, 0], 1, [(4, 0)]),
    ([2, 0], 10, [(2, 0), (2, 1), (0, 0), (0, 1)]),  # all there are
    ([3], 0, []),
])
def test_spread_over_bands(bands, cap, picked):
    rows = [{"band": band, "rank": rank} for band in bands for rank in (1, 0)]
    assert [(row["band"], row["rank"]) for row in autointerp.spread_over_bands(rows, cap)] == picked


@pytest.mark.parametrize("pieces, at, text", [
    (["The", " cat", " sat"], 1, "The <<cat>> sat"),  # the space before the token stays outside the marks
    (["un", "believ", "able"], 1, "un<<believ>>able"),  # no space inserted inside a word
    (["a", "\n\nb", "c"], 1, "a\n\n<<b>>c"),
    (["a", "\n", "b"], 1, "a<<\n>>b"),  # a whitespace token is marked whole
    (["[CLS]", "Hi"], 0, "<<[CLS]>>Hi"),
])
def test_excerpt_marks_the_max_tokens_text(pieces, at, text):
    assert autointerp.excerpt(pieces, at) == text


def test_prompts_file_one_line_per_live_feature(tmp_path, tables):
    path = write_prompts(tmp_path, tables, examples=10, quantile_examples=3)
    records = read_records(path)  # one JSON document per line: no raw newline from the corpus leaks in
    assert [record["feature"] for record in records] == [1, 3, 4]

    # Feature 3: the whole user message, against strings written out by hand; its first excerpt's
    # window starts at the sequence start (pos 1 < CONTEXT), with its special token, and holds the
    # corpus's line break as written.
    assert user_content(records[1]) == "\n".join([
        "Excerpts where the feature fires most strongly:",
        "Excerpt 1 (activation 4):",
        '[CLS]<<say>> "hi"\n<script>alert(1)</script> C:\\path',
        "Excerpt 2 (activation 2.5):",
        "x3 x4 x5 <<x6>> x7 x8 x9",
        "",
        "Excerpts sampled across its activation range (band 0 is the weakest):",
        "Excerpt 3 (band 1, activation 2.5):",
        "x3 x4 x5 <<x6>> x7 x8 x9",
        "",
        "Label this feature in at most 8 words.",
    ])
    assert user_lines(records[2])[1:3] == ["Excerpt 1 (activation 1):", "y2 y3 y4 <<y5>>"]  # clipped at the end

    # Feature 1: top examples capped at 10, strongest first; 3 quantile examples spread over bands.
    lines = user_lines(records[0])
    top = lines[1:lines.index("")]
    assert top[0::2] == [f"Excerpt {rank + 1} (activation {20 - rank:g}):" for rank in range(10)]
    assert top[1::2] == [" ".join(f"<<w{i}>>" if i == rank + 5 else f"w{i}" for i in range(rank + 2, rank + 9))
                         for rank in range(10)]
    banded = lines[lines.index("") + 2:-2]
    assert banded[0::2] == ["Excerpt 11 (band 4, activation 9.5):", "Excerpt 12 (band 2, activation 5.5):",
                            "Excerpt 13 (band 0, activation 1.5):"]
    assert banded[1] == "q3 q4 q5 <<q6>> q7 q8 q9"


def test_corpus_strings_survive_the_json_round_trip(tmp_path):
    rows = [example(5, 0, seq=20, pos=5, activation=1.0)]
    tables = write_tables(tmp_path, rows, [{**rows[0], "band": 0}])
    path = tmp_path / "p.jsonl"
    autointerp.write_prompts(*tables, path, examples=1, quantile_examples=1)
    raw = path.read_bytes()
    assert raw.count(b"\n") == 1 and b"\r" not in raw  # control characters only JSON-escaped
    (record,) = read_records(path)
    # The window starts at '"hi"' (without the space before it); the max token is whitespace only.
    assert '\n"hi"\n<script>alert(1)</script> C:\\path<<\r\t\u2028>>é✓\n' in user_content(record)


def test_prompts_stream_in_batches_of_any_size(tables):
    whole = list(autointerp.feature_examples(*tables[:2]))
    assert [(feature, len(top), len(banded)) for feature, top, banded in whole] == [(1, 12, 10), (3, 2, 1), (4, 1, 1)]
    for batch_rows in (1, 3):
        assert list(autointerp.feature_examples(*tables[:2], batch_rows=batch_rows)) == whole


def test_unsorted_table_is_an_error(tmp_path):
    rows = [example(f, 0, seq=0, pos=1, activation=1.0) for f in (3, 1)]
    tables = write_tables(tmp_path, rows, [])
    with pytest.raises(SaeflowError, match="not sorted by feature"):
        autointerp.write_prompts(*tables, tmp_path / "p.jsonl", 10, 5)
    assert not (tmp_path / "p.jsonl").exists()


# ---------------------------------------------------------------- labels


class FakeServer:
    """An OpenAI-compatible chat endpoint on loopback that records every request. It labels a
    prompt by its first marked token; a prompt containing a token in `fail` gets `status`, and
    one in `busy` gets 429 on its first attempt only."""

    def __init__(self, fail=(), status=500, busy=()):
        self.requests, self.fail, self.status, self.busy = [], set(fail), status, set(busy)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                prompt = body["messages"][1]["content"]
                marked = prompt.split("<<", 1)[1].split(">>", 1)[0]
                if marked in server.fail:
                    return self.answer(server.status, {"error": "nope"})
                if marked in server.busy:
                    server.busy.discard(marked)
                    return self.answer(429, {"error": "slow down"})
                self.answer(200, {"choices": [{"message": {"role": "assistant", "content": f"  about {marked!r}\n"}}]})

            def answer(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback requests must not go through a proxy the environment may name."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def settings(url, **overrides):
    return {"enabled": True, "endpoint": url, "model": "tiny-labeller", "api_key_env": "SAEFLOW_TEST_KEY",
            "max_features": None, "examples": 10, "quantile_examples": 5, "timeout_s": 5, "temperature": 0,
            "max_tokens": 60, **overrides}


def fast(endpoint):
    return dataclasses.replace(endpoint, retry_delays_s=(0.0, 0.0))


def test_labels_from_an_openai_compatible_server(tmp_path, tables):
    prompts = write_prompts(tmp_path, tables)
    out = tmp_path / "llm_labels.parquet"
    with FakeServer() as server:
        endpoint = autointerp.endpoint_from_config(settings(server.url), environ={"SAEFLOW_TEST_KEY": "sk-test"})
        autointerp.label_features(prompts, out, endpoint)
    table = pq.read_table(out)
    assert table.schema == autointerp.LABEL_SCHEMA
    assert table.to_pylist() == [
        {"feature": 1, "label": "about 'w5'", "model": "tiny-labeller", "error": None},
        {"feature": 3, "label": "about 'say'", "model": "tiny-labeller", "error": None},
        {"feature": 4, "label": "about 'y5'", "model": "tiny-labeller", "error": None},
    ]
    sent = [record["messages"] for record in read_records(prompts)]
    assert [request["path"] for request in server.requests] == ["/v1/chat/completions"] * 3
    assert [request["body"] for request in server.requests] == [
        {"model": "tiny-labeller", "messages": messages, "temperature": 0, "max_tokens": 60} for messages in sent]
    assert {request["headers"]["Authorization"] for request in server.requests} == {"Bearer sk-test"}


def test_no_key_sends_no_authorization_and_max_features_caps(tmp_path, tables):
    prompts = write_prompts(tmp_path, tables)
    with FakeServer() as server:
        endpoint = autointerp.endpoint_from_config(settings(server.url, max_features=2), environ={})
        table = autointerp.label_features(prompts, tmp_path / "l.parquet", endpoint, max_features=2)
    assert table.column("feature").to_pylist() == [1, 3]
    assert autointerp.count_prompts(prompts, 2) == 2 and autointerp.count_prompts(prompts) == 3
    assert len(server.requests) == 2
    assert not any("Authorization" in request["headers"] for request in server.requests)


def test_a_failing_feature_is_recorded_and_the_rest_labelled(tmp_path, tables):
    prompts = write_prompts(tmp_path, tables)
    with FakeServer(fail={"w5"}, busy={"y5"}) as server:  # feature 1 always 500; feature 4 429 once
        endpoint = fast(autointerp.endpoint_from_config(settings(server.url), environ={}))
        table = autointerp.label_features(prompts, tmp_path / "l.parquet", endpoint)
    rows = table.to_pylist()
    assert [(row["feature"], row["label"]) for row in rows] == [(1, None), (3, "about 'say'"), (4, "about 'y5'")]
    assert rows[0]["error"].startswith("HTTP 500") and rows[1]["error"] is None and rows[2]["error"] is None
    # Feature 1: the first try and two retries; feature 3: one; feature 4: the 429 and its retry.
    assert len(server.requests) == 3 + 1 + 2


def test_http_failures_after_a_success_never_stop_the_run(tmp_path):
    rows = [example(f, 0, seq=50 + f, pos=1, activation=1.0) for f in range(6)]
    prompts = tmp_path / "p.jsonl"
    autointerp.write_prompts(*write_tables(tmp_path, rows, []), prompts, 10, 5)
    with FakeServer(fail={"f1-1", "f2-1", "f3-1", "f4-1"}, status=400) as server:
        endpoint = fast(autointerp.endpoint_from_config(settings(server.url), environ={}))
        table = autointerp.label_features(prompts, tmp_path / "l.parquet", endpoint)
    assert table.column("label").to_pylist() == ["about 'f0-1'", None, None, None, None, "about 'f5-1'"]
    assert len(server.requests) == 6  # a 400 is not retried


def test_misconfigured_endpoint_stops_before_any_success(tmp_path, tables):
    prompts = write_prompts(tmp_path, tables)
    out = tmp_path / "llm_labels.parquet"
    with FakeServer(fail={"w5", "say", "y5"}, status=401) as server:
        endpoint = fast(autointerp.endpoint_from_config(settings(server.url), environ={}))
        with pytest.raises(SaeflowError, match=r"autointerp\.endpoint .*3 requests in a row failed.*HTTP 401"):
            autointerp.label_features(prompts, out, endpoint)
    assert not out.exists()


def test_unreachable_endpoint_is_one_error_and_no_file(tmp_path, tables):
    prompts = write_prompts(tmp_path, tables)
    with socket.socket() as probe:  # a loopback port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    out = tmp_path / "llm_labels.parquet"
    endpoint = autointerp.endpoint_from_config(settings(url), environ={})
    with pytest.raises(SaeflowError) as error:
        autointerp.label_features(prompts, out, endpoint)
    message = str(error.value)
    assert "autointerp.endpoint" in message and url in message and "no answer" in message
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["autointerp_prompts.jsonl", "top_examples.parquet", "quantile_examples.parquet", "tokens.parquet",
         "documents.parquet"])


def test_endpoint_from_config():
    endpoint = autointerp.endpoint_from_config(settings("http://127.0.0.1:9/v1", temperature=0.5, max_tokens=20),
                                               environ={"SAEFLOW_TEST_KEY": "k"})
    assert endpoint == Endpoint(url="http://127.0.0.1:9/v1", model="tiny-labeller", api_key="k",
                                temperature=0.5, max_tokens=20, timeout_s=5)
    assert autointerp.endpoint_from_config(settings("http://x/v1", api_key_env=None),
                                      environ={"SAEFLOW_TEST_KEY": "k"}).api_key is None
    with pytest.raises(SaeflowError, match="autointerp.model"):
        autointerp.endpoint_from_config(settings("http://127.0.0.1:9/v1", model=None), environ={})
    with pytest.raises(SaeflowError, match="autointerp.endpoint"):
        autointerp.endpoint_from_config(settings(None), environ={})
