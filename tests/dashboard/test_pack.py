"""The dashboard's data, decoded in Python, equals the artifacts it was built from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saeflow.dashboard import blob, build_dashboard
from saeflow.dashboard.examples import Windows, pack_example_corpus
from saeflow.errors import SaeflowError

from .conftest import DEAD, NEEDLE, NEEDLE_LABEL, XSS_IMG
from .decode import Dashboard, assert_shown_acts


def rows(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_blob_round_trip_every_dtype():
    rng = np.random.default_rng(0)
    arrays = {
        "u1": rng.integers(0, 255, 7, dtype=np.uint8),
        "u2": rng.integers(0, 65535, 5, dtype=np.uint16),
        "u4": rng.integers(0, 2**32 - 1, 3, dtype=np.uint32),
        "i4": rng.integers(-(2**31), 2**31 - 1, 4, dtype=np.int32),
        "f2": rng.standard_normal(6).astype(np.float16),
        "f4": np.array([1.5, np.nan, -np.inf], dtype=np.float32),
        "empty": np.zeros(0, dtype=np.uint32),
    }
    payload = {"strings": ["<b>", "é", ""], "n": 3}
    back_payload, back = blob.unpack(blob.from_text(blob.to_text(blob.pack(payload, arrays))))
    assert back_payload == payload
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype
        np.testing.assert_array_equal(back[name], array)


def test_pack_is_deterministic():
    arrays = {"x": np.arange(10, dtype=np.uint16)}
    assert blob.pack({"a": 1}, arrays) == blob.pack({"a": 1}, arrays)


def test_narrow_dtypes():
    assert blob.smallest_uint(np.array([0, 255])).dtype == np.uint8
    assert blob.smallest_uint(np.array([256])).dtype == np.uint16
    assert blob.smallest_uint(np.array([70000])).dtype == np.uint32
    assert blob.compact_floats(np.array([1.0, 0.0])).dtype == np.float16
    # Beyond float16's range the values stay float32 rather than turn into infinities.
    assert blob.compact_floats(np.array([1e6])).dtype == np.float32


def test_top_and_quantile_examples_round_trip(built):
    board = Dashboard(built.html)
    for sae in built.saes:
        analysis = f"{sae['dir']}/analysis"
        for kind, name in (("top", "top_examples"), ("q", "quantile_examples")):
            table = rows(f"{analysis}/{name}.parquet")
            for f in range(board.sae(sae["name"])["d_sae"]):
                expected = [r for r in table if r["feature"] == f]
                if kind == "top":
                    expected.sort(key=lambda r: r["rank"])
                else:
                    expected.sort(key=lambda r: (-r["band"], r["rank"]))
                got = board.examples(sae["name"], kind, f)
                assert [e["tokens"] for e in got] == [r["tokens"] for r in expected]
                assert [(e["seq"], e["pos"]) for e in got] == [(r["seq"], r["pos"]) for r in expected]
                if kind == "q":
                    assert [e["band"] for e in got] == [r["band"] for r in expected]
                for e, r in zip(got, expected):
                    assert_shown_acts(e["acts"], r["acts"], r["activation"])


def test_dead_feature_has_no_examples_and_markup_tokens_are_data(built):
    board = Dashboard(built.html)
    assert board.examples("a", "top", DEAD) == []
    assert XSS_IMG in board.strings


def test_corpus_stores_each_position_once(built):
    corpus = Dashboard(built.html).corpus
    starts = corpus["seg.start"].astype(np.int64)
    ends = starts + np.diff(corpus["seg.ptr"].astype(np.int64))
    order = np.lexsort((starts, corpus["seg.seq"]))
    same_seq = corpus["seg.seq"][order][1:] == corpus["seg.seq"][order][:-1]
    # Segments of one sequence neither overlap nor touch (they would have been merged).
    assert (starts[order][1:][same_seq] > ends[order][:-1][same_seq]).all()


def test_index_round_trip(built):
    board = Dashboard(built.html)
    sae = built.saes[0]
    payload, arrays = board.index("a")
    for r in rows(f"{sae['dir']}/analysis/feature_stats.parquet"):
        f = r["feature"]
        assert arrays["n_active"][f] == r["n_active"]
        for column in ("density", "max", "mean", "std", "min"):
            if r[column] is None:
                assert np.isnan(arrays[column][f])
            else:
                assert arrays[column][f] == np.float32(r[column])

    labels = {r["feature"]: r["label"] for r in rows(f"{sae['dir']}/analysis/labels.parquet")}
    assert payload["labels"][NEEDLE] == NEEDLE_LABEL
    assert payload["labels"] == [labels.get(f, "") for f in range(48)]

    unit_map = json.loads(Path(sae["dir"], "units", "unit_map.json").read_text())
    assert np.flatnonzero(arrays["new_unit"] >= 0).tolist() == unit_map["kept_units"]
    assert payload["thresholds"] == ["p50", "p90", "p99", "p99_5"]
    for r in rows(f"{sae['dir']}/units/thresholds.parquet"):
        assert arrays["thr.p99_5"][r["unit"]] == np.float32(r["p99_5"])
    assert payload["bands"] == 5


def test_peak_tokens_are_the_top_examples_max_tokens(built):
    board = Dashboard(built.html)
    _, arrays = board.index("a")
    top = rows(f"{built.saes[0]['dir']}/analysis/top_examples.parquet")
    for f in range(48):
        ranked = sorted((r for r in top if r["feature"] == f), key=lambda r: r["rank"])
        peaks = [r["tokens"][int(np.argmax(r["acts"]))] for r in ranked]
        expected = sorted(set(peaks), key=lambda t: (-peaks.count(t), peaks.index(t)))[:8]
        got = [board.strings[t] for t in arrays["peak.token"][arrays["peak.ptr"][f] : arrays["peak.ptr"][f + 1]]]
        assert got == expected


def test_chunk_tables_round_trip(built):
    """Histograms, influences and neighbours of every feature, read from the chunk holding it."""
    board = Dashboard(built.html)
    analysis = f"{built.saes[0]['dir']}/analysis"
    assert len(board.sae("a")["chunks"]) == 3  # 48 features, 16 per chunk in these tests
    for r in rows(f"{analysis}/histograms.parquet"):
        f = r["feature"]
        _, arrays = board.chunk("a", f)
        counts = board.rows("a", "hist_counts", f)
        edges = board.rows("a", "hist_edges", f)
        assert arrays["hist.counts"][counts.start : counts.stop].tolist() == r["counts"]
        np.testing.assert_array_equal(arrays["hist.edges"][edges.start : edges.stop], np.float32(r["edges"]))

    for r in rows(f"{analysis}/influences.parquet"):
        _, arrays = board.chunk("a", r["feature"])
        found = [(bool(arrays["inf.positive"][i]), board.strings[arrays["inf.token"][i]], float(arrays["inf.score"][i]))
                 for i in board.rows("a", "inf", r["feature"])]
        assert (r["sign"] == "+", r["token"], pytest.approx(r["score"], rel=1e-3)) in found

    kinds = ("cosine", "coactivation")
    for r in rows(f"{analysis}/neighbours.parquet"):
        _, arrays = board.chunk("a", r["feature"])
        found = [(kinds[arrays["nb.kind"][i]], int(arrays["nb.other"][i])) for i in board.rows("a", "nb", r["feature"])]
        assert (r["kind"], r["other"]) in found


def test_detection_keeps_each_units_best_labels(built):
    board = Dashboard(built.html)
    payload, _ = board.index("a")
    table = rows(f"{built.saes[0]['dir']}/analysis/detection.parquet")
    for unit in {r["unit"] for r in table}:
        expected = sorted((r for r in table if r["unit"] == unit), key=lambda r: -r["f1"])[:10]
        _, arrays = board.chunk("a", unit)
        at = board.rows("a", "det", unit)
        assert [payload["detection_labels"][arrays["det.label"][i]] for i in at] == [r["label"] for r in expected]
        auroc = np.array([np.nan if r["auroc"] is None else r["auroc"] for r in expected])
        np.testing.assert_allclose(arrays["det.auroc"][at.start : at.stop].astype(float), auroc, rtol=1e-3)


def test_label_tokens_round_trip(built):
    board = Dashboard(built.html)
    _, arrays = board.index("a")
    for r in rows(f"{built.saes[0]['dir']}/analysis/labels.parquet"):
        at = slice(arrays["tfidf.ptr"][r["feature"]], arrays["tfidf.ptr"][r["feature"] + 1])
        assert [board.strings[t] for t in arrays["tfidf.token"][at]] == r["tokens"]
        np.testing.assert_allclose(arrays["tfidf.score"][at], r["scores"], rtol=1e-3)
    assert "tfidf.ptr" not in board.index("b")[1]  # its labels.parquet has no scored tokens


def test_overview_manifest(built):
    run = Dashboard(built.html).manifest["run"]
    assert run == {"model": "synthetic/model", "layers": [3, 5], "documents": 16, "tokens": 64 * 24, "labelled": True}
    a = Dashboard(built.html).sae("a")
    assert a["eval"]["ce_recovered"] == pytest.approx(4.5 / 4.8)
    assert len(a["training"]["tokens_seen"]) == 50
    assert a["density"]["dead"] == 1 and sum(a["density"]["counts"]) == 47


def test_minimal_sae_builds(built_minimal):
    board = Dashboard(built_minimal.html)
    payload, arrays = board.index("a")
    assert payload["labels"] is None and "new_unit" not in arrays and "tfidf.ptr" not in arrays
    assert set(board.chunk("a", 0)[1]) == {f"top{s}" for s in (".ptr", ".segment", ".offset", ".length", ".max_index",
                                                                 ".activation", "_acts.ptr", ".acts")}
    assert board.sae("a")["training"] is None and board.examples("a", "q", 0) == []
    assert len(board.examples("a", "top", 0)) == 20


def windows(seq, start, length, tokens, acts=None) -> Windows:
    length = np.asarray(length)
    return Windows(np.zeros(len(seq), np.int64), None, np.asarray(seq), np.asarray(start), length,
                   np.zeros(len(seq), np.int64), pa.array(tokens), np.zeros(len(tokens), np.float32))


def test_overlapping_windows_merge_and_disjoint_ones_do_not():
    w = windows([0, 0, 0, 1], [0, 2, 9, 0], [3, 3, 1, 2], [*"abccde", "x", "p", "q"])
    corpus, (placed,) = pack_example_corpus([w])
    strings = corpus.strings.to_pylist()
    segments = [(int(s), int(st), "".join(strings[t] for t in corpus.tokens[corpus.ptr[i] : corpus.ptr[i + 1]]))
                for i, (s, st) in enumerate(zip(corpus.seq, corpus.start))]
    assert sorted(segments) == [(0, 0, "abcde"), (0, 9, "x"), (1, 0, "pq")]
    assert placed.offset.tolist() == [0, 2, 0, 0]


def test_windows_that_disagree_on_a_token_are_an_error():
    w = windows([4, 4], [0, 1], [2, 2], list("abXc"))
    with pytest.raises(SaeflowError, match="sequence 4"):
        pack_example_corpus([w])


def test_missing_feature_stats_fails_clearly_and_writes_nothing(built, tmp_path):
    sae_dir, out_dir = tmp_path / "sae", tmp_path / "out"
    sae_dir.mkdir()
    out_dir.mkdir()
    (sae_dir / "cfg.json").write_text((Path(built.saes[0]["dir"]) / "cfg.json").read_text())
    with pytest.raises(SaeflowError, match="feature_stats.parquet"):
        build_dashboard(out_dir / "dashboard.html", built.run, [{"name": "x", "dir": str(sae_dir)}])
    assert not list(out_dir.iterdir())  # not even a temporary file
