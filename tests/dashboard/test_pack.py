"""The dashboard's data, decoded in Python, equals the artifacts it was built from."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saeflow.dashboard import blob, build_dashboard
from saeflow.dashboard.artifacts import SaeArtifacts, from_inputs
from saeflow.errors import SaeflowError

from .conftest import ABLATED, DEAD, LLM_NEEDLE, NEEDLE, NEEDLE_LABEL, XSS_IMG, XSS_STEERED
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


def expected_pieces(corpus, row) -> tuple[list[str], list[bool]]:
    """The pieces a window shows (see SyntheticCorpus.piece) and which tokens are special."""
    start = row["pos"] - int(np.argmax(row["acts"]))
    positions = range(start, start + len(row["tokens"]))
    return [corpus.piece(row["seq"], p, p == start) for p in positions], [p == 0 for p in positions]


def test_top_and_quantile_examples_round_trip(built):
    board = Dashboard(built.html)
    for sae in built.saes:
        for kind, name in (("top", "top_examples"), ("q", "quantile_examples")):
            table = rows(sae.path(name))
            for f in range(board.sae(sae.name)["d_sae"]):
                expected = [r for r in table if r["feature"] == f]
                if kind == "top":
                    expected.sort(key=lambda r: r["rank"])
                else:
                    expected.sort(key=lambda r: (-r["band"], r["rank"]))
                got = board.examples(sae.name, kind, f)
                assert [(e["tokens"], e["special"]) for e in got] == \
                    [expected_pieces(built.corpus, r) for r in expected]
                assert [(e["seq"], e["pos"]) for e in got] == [(r["seq"], r["pos"]) for r in expected]
                if kind == "q":
                    assert [e["band"] for e in got] == [r["band"] for r in expected]
                for e, r in zip(got, expected):
                    assert_shown_acts(e["acts"], r["acts"], r["activation"])


def test_dead_feature_has_no_examples_and_markup_tokens_are_data(built):
    board = Dashboard(built.html)
    assert board.examples("a", "top", DEAD) == []
    assert any(XSS_IMG in piece for piece in board.strings)


def test_example_text_is_the_documents_text(built):
    """Joined, the pieces of an example's content tokens are exactly the document's text from the
    first one's start to the last one's end: gaps, line breaks and glued tokens as written."""
    board = Dashboard(built.html)
    texts = pq.read_table(built.run.documents).column("text").to_pylist()
    tokens = pq.read_table(built.run.tokens)
    L = built.corpus.spec.seq_len
    doc, start, end = (tokens[c].to_numpy() for c in ("doc", "start", "end"))
    checked = 0
    for f in range(48):
        for e in board.examples("a", "top", f):
            first = e["seq"] * L + e["pos"] - int(np.argmax(e["acts"]))
            content = [j for j, special in enumerate(e["special"]) if not special]
            lo, hi = first + content[0], first + content[-1]
            assert "".join(e["tokens"][j] for j in content) == texts[doc[lo]][start[lo] : end[hi]]
            specials = [e["tokens"][j] for j, special in enumerate(e["special"]) if special]
            assert specials == ["[CLS]"] * (len(e["special"]) - len(content))
            checked += "\n" in texts[doc[lo]][start[lo] : end[hi]]
    assert checked  # some examples span line breaks


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
    for r in rows(sae.path("feature_stats")):
        f = r["feature"]
        assert arrays["n_active"][f] == r["n_active"]
        for column in ("density", "max", "mean", "std", "min"):
            if r[column] is None:
                assert np.isnan(arrays[column][f])
            else:
                assert arrays[column][f] == np.float32(r[column])

    labels = {r["feature"]: r["label"] for r in rows(sae.path("labels"))}
    assert payload["labels"][NEEDLE] == NEEDLE_LABEL
    assert payload["labels"] == [labels.get(f, "") for f in range(48)]

    unit_map = json.loads(sae.path("unit_map").read_text())
    assert np.flatnonzero(arrays["new_unit"] >= 0).tolist() == unit_map["kept_units"]
    assert payload["thresholds"] == ["p50", "p90", "p99", "p99_5"]
    for r in rows(sae.path("thresholds")):
        assert arrays["thr.p99_5"][r["unit"]] == np.float32(r["p99_5"])
    assert payload["bands"] == 5


def test_peak_tokens_are_the_top_examples_max_tokens(built):
    board = Dashboard(built.html)
    _, arrays = board.index("a")
    top = rows(built.saes[0].path("top_examples"))
    for f in range(48):
        ranked = sorted((r for r in top if r["feature"] == f), key=lambda r: r["rank"])
        peaks = [r["tokens"][int(np.argmax(r["acts"]))] for r in ranked]
        expected = sorted(set(peaks), key=lambda t: (-peaks.count(t), peaks.index(t)))[:8]
        got = [board.strings[t] for t in arrays["peak.token"][arrays["peak.ptr"][f] : arrays["peak.ptr"][f + 1]]]
        assert got == expected


def test_chunk_tables_round_trip(built):
    """Histograms, influences and neighbours of every feature, read from the chunk holding it."""
    board = Dashboard(built.html)
    sae = built.saes[0]
    assert len(board.sae("a")["chunks"]) == 3  # 48 features, 16 per chunk in these tests
    for r in rows(sae.path("histograms")):
        f = r["feature"]
        _, arrays = board.chunk("a", f)
        counts = board.rows("a", "hist_counts", f)
        edges = board.rows("a", "hist_edges", f)
        assert arrays["hist.counts"][counts.start : counts.stop].tolist() == r["counts"]
        np.testing.assert_array_equal(arrays["hist.edges"][edges.start : edges.stop], np.float32(r["edges"]))

    for r in rows(sae.path("influences")):
        _, arrays = board.chunk("a", r["feature"])
        found = [(bool(arrays["inf.positive"][i]), board.strings[arrays["inf.token"][i]], float(arrays["inf.score"][i]))
                 for i in board.rows("a", "inf", r["feature"])]
        assert (r["sign"] == "+", r["token"], pytest.approx(r["score"], rel=1e-3)) in found

    kinds = ("cosine", "coactivation")
    for r in rows(sae.path("neighbours")):
        _, arrays = board.chunk("a", r["feature"])
        found = [(kinds[arrays["nb.kind"][i]], int(arrays["nb.other"][i])) for i in board.rows("a", "nb", r["feature"])]
        assert (r["kind"], r["other"]) in found


def test_label_tokens_round_trip(built):
    board = Dashboard(built.html)
    _, arrays = board.index("a")
    for r in rows(built.saes[0].path("labels")):
        at = slice(arrays["tfidf.ptr"][r["feature"]], arrays["tfidf.ptr"][r["feature"] + 1])
        assert [board.strings[t] for t in arrays["tfidf.token"][at]] == r["tokens"]
        np.testing.assert_allclose(arrays["tfidf.score"][at], r["scores"], rtol=1e-3)
    assert "tfidf.ptr" not in board.index("b")[1]  # its labels.parquet has no scored tokens


def test_overview_manifest(built):
    run = Dashboard(built.html).manifest["run"]
    assert run == {"model": "synthetic/model", "hooks": ["layer-3", "layer-5"], "documents": 16, "tokens": 64 * 24, "labelled": True}
    a = Dashboard(built.html).sae("a")
    assert a["eval"]["ce_recovered"] == pytest.approx(4.5 / 4.8)
    assert len(a["training"]["tokens_seen"]) == 50
    assert a["density"]["dead"] == 1 and sum(a["density"]["counts"]) == 47


def test_minimal_sae_builds(built_minimal):
    board = Dashboard(built_minimal.html)
    payload, arrays = board.index("a")
    assert payload["labels"] is None and "new_unit" not in arrays and "tfidf.ptr" not in arrays
    assert set(board.chunk("a", 0)[1]) == {f"top{s}" for s in (".ptr", ".segment", ".offset", ".first_piece", ".length",
                                                                 ".max_index", ".activation", "_acts.ptr", ".acts")}
    assert board.sae("a")["training"] is None and board.examples("a", "q", 0) == []
    assert len(board.examples("a", "top", 0)) == 20


def test_examples_of_another_corpus_fail_clearly_and_write_nothing(built, tmp_path):
    """Examples whose tokens are not the corpus's at their positions come from another run."""
    sae = built.saes[0]
    top = pq.read_table(sae.path("top_examples")).to_pylist()
    top[0]["tokens"][0] = "not the corpus's"
    pq.write_table(pa.Table.from_pylist(top, schema=pq.read_schema(sae.path("top_examples"))), tmp_path / "top.parquet")
    out = tmp_path / "out"
    out.mkdir()
    stale = SaeArtifacts("a", {**sae.paths, "top_examples": tmp_path / "top.parquet"})
    message = f"disagree with corpus/tokens.parquet on the tokens of sequence {top[0]['seq']};"
    with pytest.raises(SaeflowError, match=message):
        build_dashboard(out / "dashboard.html", built.run, [stale])
    assert not list(out.iterdir())  # not even a temporary file


def inputs_of(built) -> tuple[dict, dict]:
    """The dashboard rule's inputs for the built run, as snakemake.input holds them, and its
    params.owners: a key some SAE lacks, and steering (a path per experiment), names the SAE of
    each path; the others follow params.saes."""
    inputs = {"tokens": built.run.tokens, "documents": built.run.documents, "rest_of_run": ["x"]}
    owners = {}
    for key in dict.fromkeys(key for sae in built.saes for key in sae.paths):
        pairs = [(sae.name, str(path)) for sae in built.saes if key in sae.paths
                 for path in (sae.paths[key] if isinstance(sae.paths[key], list) else [sae.paths[key]])]
        inputs[key] = [path for _, path in pairs]
        if key == "steering" or len(pairs) != len(built.saes):
            owners[key] = [name for name, _ in pairs]
    return inputs, owners


def test_inputs_are_the_rules(built):
    inputs, owners = inputs_of(built)
    assert owners["steering"] == ["a", "a", "a"] and owners["llm_labels"] == ["a"]
    run, saes = from_inputs(inputs, "org/model", ["a", "b"], owners)
    assert run.model == "org/model" and [sae.name for sae in saes] == ["a", "b"]
    assert saes[1].path("top_examples") == built.saes[1].path("top_examples")
    assert saes[0].path("steering") == built.saes[0].path("steering") and len(saes[0].path("steering")) == 3
    assert saes[1].tables("steering") == [] and saes[1].path("ablation") is None
    del inputs["detection"]  # optional: a corpus without labels has no detection
    assert all(sae.table("detection") is None for sae in from_inputs(inputs, "m", ["a", "b"], owners)[1])
    inputs["influences"] = inputs["influences"][1:]  # only "b" is on a hidden_states hook
    owners["influences"] = ["b"]
    a, b = from_inputs(inputs, "m", ["a", "b"], owners)[1]
    assert a.path("influences") is None and b.path("influences") == built.saes[1].path("influences")
    # Steering of both SAEs in one flat list, in any order; an SAE may own none.
    inputs["steering"] = [inputs["steering"][2], built.saes[0].path("steering")[0], inputs["steering"][1]]
    a, b = from_inputs(inputs, "m", ["a", "b"], {**owners, "steering": ["b", "a", "b"]})[1]
    assert a.path("steering") == [built.saes[0].path("steering")[0]]
    assert [path.name for path, _ in b.tables("steering")] == ["python-dir.parquet", "pin.parquet"]
    inputs["steering"] = []
    assert all(sae.tables("steering") == [] for sae in from_inputs(inputs, "m", ["a", "b"], {**owners, "steering": []})[1])


@pytest.mark.parametrize("key", ["tokens", "documents", "sae_cfg", "feature_stats"])
def test_a_required_input_not_given_is_one_clear_error(built, key):
    inputs, owners = inputs_of(built)
    del inputs[key]
    with pytest.raises(SaeflowError, match=f"needs input '{key}'"):
        from_inputs(inputs, "m", ["a", "b"], owners)


def test_a_missing_input_file_fails_clearly(built, tmp_path):
    inputs, owners = inputs_of(built)
    inputs["feature_stats"] = [inputs["feature_stats"][0], str(tmp_path / "gone.parquet")]
    with pytest.raises(SaeflowError, match=r"dashboard input 'feature_stats' of SAE b: .*gone.parquet not found"):
        from_inputs(inputs, "m", ["a", "b"], owners)
    inputs["labels"] = inputs["labels"][:1]
    with pytest.raises(SaeflowError, match="'labels': expected one path per SAE"):
        from_inputs(inputs, "m", ["a", "b"], owners)
    inputs, owners = inputs_of(built)
    with pytest.raises(SaeflowError, match="'influences': expected one path per SAE of \\['a'\\]"):
        from_inputs(inputs, "m", ["a", "b"], {**owners, "influences": ["a"]})
    inputs["steering"][1] = str(tmp_path / "gone.parquet")
    with pytest.raises(SaeflowError, match=r"input 'steering' of SAE a: .*gone.parquet not found"):
        from_inputs(inputs, "m", ["a", "b"], owners)


def test_owners_that_do_not_fit_the_inputs_fail_clearly(built):
    inputs, owners = inputs_of(built)
    with pytest.raises(SaeflowError, match=r"'steering': expected one path per SAE of \['a', 'c', 'a'\]"):
        from_inputs(inputs, "m", ["a", "b"], {**owners, "steering": ["a", "c", "a"]})
    with pytest.raises(SaeflowError, match=r"'llm_labels': an SAE may have one path"):
        from_inputs({**inputs, "llm_labels": inputs["llm_labels"] * 2}, "m", ["a", "b"], {**owners, "llm_labels": ["a", "a"]})
    with pytest.raises(SaeflowError, match=r"owners gives SAEs \['a'\] for input 'ablation', which the rule does not"):
        from_inputs({k: v for k, v in inputs.items() if k != "ablation"}, "m", ["a", "b"], owners)
    with pytest.raises(SaeflowError, match=r"owners names unknown dashboard inputs \['steer'\]"):
        from_inputs(inputs, "m", ["a", "b"], {**owners, "steer": ["a"]})


def test_wordpiece_examples_read_as_written(built_wordpiece):
    """All-MiniLM-L6-v2 splits, lowercases and strips accents; the examples show the text."""
    board = Dashboard(built_wordpiece.html)
    shown = ["".join(piece for piece, special in zip(e["tokens"], e["special"]) if not special)
             for e in board.examples("wp", "top", 0)]
    assert shown == ["Tokenization of unbelievable", "Tokenization again.", "Tokenization!"]
    assert not any("##" in piece for e in board.examples("wp", "top", 0) for piece in e["tokens"])
    payload, _ = board.blobs[board.manifest["corpus"]]
    assert payload["wordpiece"] is True  # so the page drops "##" from vocabulary tokens


# ---------------------------------------------------------------- issue 11: steering, ablation, labels


def nan_for_none(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def test_steering_rows_round_trip(built):
    """Every row of every experiment file of SAE "a", nothing else; "b" has none."""
    board = Dashboard(built.html)
    expected = [r for path in built.saes[0].path("steering") for r in rows(path)]
    got = board.steering("a")
    key = lambda r: (r["experiment"], r["feature"] if r["feature"] is not None else -1, r["prompt_index"], r["alpha"])  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key)
    assert any(r["steered"] == XSS_STEERED for r in got)
    assert board.sae("b")["steering"] is None
    summary = {e["name"]: e for e in board.sae("a")["steering"]["experiments"]}
    assert set(summary) == {"boost", "pin", "python-dir"}
    for name, e in summary.items():
        mine = [r for r in expected if r["experiment"] == name]
        assert e["rows"] == len(mine) and e["mode"] == mine[0]["mode"]
        assert e["features"] == sorted({r["feature"] for r in mine if r["feature"] is not None})
        assert e["vectors"] == sorted({r["vector"] for r in mine if r["vector"] is not None})
        assert e["alphas"] == sorted({r["alpha"] for r in mine})
        assert e["prompts"] == len({r["prompt_index"] for r in mine})


def test_ablation_joins_its_top_examples(built):
    """Each ablation row's loss and loss effect sit at its token of the top example of its
    (feature, rank): same sequence, same window position; other examples carry none."""
    board = Dashboard(built.html)
    table = rows(built.saes[0].path("ablation"))
    top = rows(built.saes[0].path("top_examples"))
    ablated = sorted({r["feature"] for r in table})
    assert len(ablated) == ABLATED and board.index("a")[0]["ablated"] == ABLATED and board.index("b")[0]["ablated"] is None
    for f in ablated:
        ranks = sorted(r["rank"] for r in top if r["feature"] == f)
        shown = board.examples("a", "top", f)
        mine = [r for r in table if r["feature"] == f]
        assert [i for i, e in enumerate(shown) if e["ablation"]] == sorted({ranks.index(r["rank"]) for r in mine})
        for r in mine:
            e = shown[ranks.index(r["rank"])]
            j = r["pos"] - e["start"]
            assert e["seq"] == r["seq"] and 0 <= j < len(e["tokens"])
            assert e["tokens"][j].endswith(r["token"])
            for column, name in (("loss_effect", "effect"), ("loss", "loss")):
                np.testing.assert_array_equal(e["ablation"][name][j], np.float32(np.nan if r[column] is None else r[column]))
        assert sum(len(e["tokens"]) for e in shown if e["ablation"]) == len(mine)  # every window position has its row
    assert all(e["ablation"] is None for e in board.examples("b", "top", 0))
    assert any(r["loss_effect"] is None for r in table)  # position 0 of a sequence, shown as no value


def test_ablation_logits_round_trip(built):
    board = Dashboard(built.html)
    table = rows(built.saes[0].path("ablation_logits"))
    for f in range(48):
        _, arrays = board.chunk("a", f)
        got = [(bool(arrays["ablg.positive"][i]), board.strings[arrays["ablg.token"][i]], float(arrays["ablg.effect"][i]))
               for i in board.rows("a", "ablg", f)]
        mine = sorted((r for r in table if r["feature"] == f), key=lambda r: (r["sign"] != "+", r["rank"]))
        assert [(g[0], g[1]) for g in got] == [(r["sign"] == "+", r["token"]) for r in mine]
        np.testing.assert_allclose([g[2] for g in got], [r["effect"] for r in mine], rtol=1e-3)
    assert "ablg.ptr" not in board.chunk("b", 0)[1]


def test_llm_labels_where_present(built):
    board = Dashboard(built.html)
    payload, _ = board.index("a")
    table = rows(built.saes[0].path("llm_labels"))
    labels = {r["feature"]: r["label"] for r in table if r["label"] is not None}
    assert payload["llm_labels"] == [labels.get(f, "") for f in range(48)]
    assert payload["llm_labels"][NEEDLE] == LLM_NEEDLE and payload["llm_models"] == ["synthetic/llm"]
    failed = next(r["feature"] for r in table if r["error"] is not None)
    assert payload["llm_labels"][failed] == ""
    assert board.index("b")[0]["llm_labels"] is None


def test_label_alignment_keeps_each_features_best_labels(built):
    board = Dashboard(built.html)
    payload, _ = board.index("a")
    table = rows(built.saes[0].path("label_alignment"))
    assert len({r["label"] for r in table}) > 5
    for f in range(48):
        expected = sorted((r for r in table if r["feature"] == f), key=lambda r: -r["cosine"])[:5]
        _, arrays = board.chunk("a", f)
        at = board.rows("a", "align", f)
        assert [payload["alignment_labels"][arrays["align.label"][i]] for i in at] == [r["label"] for r in expected]
        assert [int(arrays["align.rank"][i]) for i in at] == [r["rank"] for r in expected]
        np.testing.assert_allclose(arrays["align.cosine"][at.start : at.stop].astype(float),
                                   [r["cosine"] for r in expected], rtol=1e-3, atol=1e-4)
    assert board.index("b")[0]["alignment_labels"] is None


def test_ablation_of_another_analysis_fails_clearly(built, tmp_path):
    sae = built.saes[0]
    table = pq.read_table(sae.path("ablation"))
    bad = table.to_pylist()
    bad[0]["rank"] = 99
    pq.write_table(pa.Table.from_pylist(bad, schema=table.schema), tmp_path / "ablation.parquet")
    with pytest.raises(SaeflowError, match=f"feature {bad[0]['feature']} has no top example of rank 99"):
        build_dashboard(tmp_path / "d.html", built.run, [SaeArtifacts("a", {**sae.paths, "ablation": tmp_path / "ablation.parquet"})])
    bad = table.to_pylist()
    bad[1]["seq"] += 1
    pq.write_table(pa.Table.from_pylist(bad, schema=table.schema), tmp_path / "ablation.parquet")
    with pytest.raises(SaeflowError, match="lies outside that top example's window"):
        build_dashboard(tmp_path / "d.html", built.run, [SaeArtifacts("a", {**sae.paths, "ablation": tmp_path / "ablation.parquet"})])
    no_top = {k: v for k, v in sae.paths.items() if k != "top_examples"}
    with pytest.raises(SaeflowError, match="must give top_examples with ablation"):
        build_dashboard(tmp_path / "d.html", built.run, [SaeArtifacts("a", no_top)])


def test_steering_table_that_breaks_the_spec_fails_clearly(built, tmp_path):
    sae = built.saes[0]
    table = pq.read_table(sae.path("steering")[0])
    pq.write_table(table.drop_columns(["best_alpha"]), tmp_path / "old.parquet")
    with pytest.raises(SaeflowError, match=r"old.parquet: steering table lacks columns \['best_alpha'\]"):
        build_dashboard(tmp_path / "d.html", built.run, [SaeArtifacts("a", {**sae.paths, "steering": [tmp_path / "old.parquet"]})])
    wide = table.set_column(table.schema.get_field_index("feature"), "feature", pa.array([48] * table.num_rows, pa.int64()))
    pq.write_table(wide, tmp_path / "wide.parquet")
    with pytest.raises(SaeflowError, match="feature ids must lie in 0..47"):
        build_dashboard(tmp_path / "d.html", built.run, [SaeArtifacts("a", {**sae.paths, "steering": [tmp_path / "wide.parquet"]})])
