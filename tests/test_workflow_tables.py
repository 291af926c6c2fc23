"""End to end, the run's tables against recomputations: the threshold encoding, stats, thresholds
and examples; the concepts; steering, ablation and vectors, each from the stored activations and
saved weights alone (the run is conftest's `finished_run`)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

import concept_oracle as oracle
from saeflow.storage import read_safetensors


def sae_encoding(results, sae, hook):
    """The hook's stored rows (float64), the SAE's threshold encoding of them in float64 numpy
    (the contract's formula, from the saved weights alone), and the features holding an entry
    within float32 rounding of θ (it may fall either way: skipped where counts must match)."""
    weights = {name: w.astype(np.float64) for name, w in read_safetensors(results / f"saes/{sae}/sae_weights.safetensors").items()}
    theta = weights["threshold"]
    assert json.loads((results / f"saes/{sae}/cfg.json").read_text())["encoding"] == "threshold" and (theta > 0).all()
    x = dense_hook_rows(results, hook)
    pre = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
    near_theta = (np.abs(pre - theta) < 1e-5 * np.abs(pre).max()).any(axis=0)
    assert near_theta.sum() <= 2
    return x, np.where(pre > theta, pre, 0.0), near_theta


def test_the_runs_feature_tables_equal_a_dense_recomputation(finished_run):
    """From the stored activations and the saved weights alone: the contract's threshold encoding
    in float64 numpy, then the CSR store, held-out eval, stats, thresholds and top examples of
    every feature, against the run's artifacts."""
    workdir, _ = finished_run
    results = workdir / "results"
    sae = results / "saes/tiny"
    plan = json.loads((results / "activations/chunks.json").read_text())["chunks"]
    x, dense, near_theta = sae_encoding(results, "tiny", "layer-1")
    weights = {name: w.astype(np.float64) for name, w in read_safetensors(sae / "sae_weights.safetensors").items()}
    tokens = pq.read_table(results / "corpus/tokens.parquet", columns=["seq", "special", "doc"])
    seq, special = tokens["seq"].to_numpy(), tokens["special"].to_numpy()
    split = pq.read_table(results / "corpus/documents.parquet", columns=["split"])["split"].to_numpy(zero_copy_only=False)
    calibration = (split[tokens["doc"].to_numpy()] == "calibration") & ~special

    # The CSR store: each token's nonzero (feature, value) pairs, sorted by feature.
    for chunk in plan:
        store = zarr.open_group(str(sae / f"features/{chunk['id']}.zarr"), mode="r")
        assert store.attrs["format"] == "csr" and store.attrs["token_start"] == chunk["token_start"]
        indptr, indices, values = store["indptr"][:], store["indices"][:], store["values"][:]
        rows = slice(chunk["token_start"], chunk["token_start"] + chunk["n_tokens"])
        stored = np.zeros((chunk["n_tokens"], dense.shape[1]))
        stored[np.repeat(np.arange(chunk["n_tokens"]), np.diff(indptr)), indices] = values
        assert indptr[0] == 0 and indptr[-1] == len(indices) and (values != 0).all()
        np.testing.assert_allclose(stored[:, ~near_theta], dense[rows][:, ~near_theta], rtol=1e-4, atol=1e-5)

    # Held-out eval: the last chunk without its special tokens, under the same encoding.
    last = plan[-1]
    held = np.arange(last["token_start"], last["token_start"] + last["n_tokens"])
    held = held[~special[held]]
    recon = dense[held] @ weights["W_dec"] + weights["b_dec"]
    evaluation = json.loads((sae / "eval.json").read_text())
    assert evaluation["holdout_tokens"] == len(held)
    assert evaluation["fvu"] == pytest.approx(((x[held] - recon) ** 2).sum() / ((x[held] - x[held].mean(0)) ** 2).sum(),
                                              rel=1e-3)
    assert evaluation["l0"] == pytest.approx((dense[held] > 0).sum(axis=1).mean(), abs=0.01)

    stats = pq.read_table(sae / "analysis/feature_stats.parquet").to_pylist()
    thresholds = {r["unit"]: r for r in pq.read_table(sae / "units/thresholds.parquet").to_pylist()}
    top = pq.read_table(sae / "analysis/top_examples.parquet").to_pylist()
    for row in stats:
        if near_theta[row["feature"]]:
            continue
        column = dense[:, row["feature"]]
        active = column[column > 0]
        assert row["n_active"] == active.size
        assert row["sum"] == pytest.approx(active.sum(), rel=1e-4)
        if not active.size:
            continue
        assert row["max"] == pytest.approx(active.max(), rel=1e-4)
        # Pruning and thresholds see only the calibration documents' content tokens.
        fitted = column[calibration][column[calibration] > 0]
        assert (row["feature"] in thresholds) == (fitted.size > 0)
        if fitted.size:
            assert thresholds[row["feature"]]["p50"] == pytest.approx(np.percentile(fitted, 50), rel=1e-4)
        seq_max = np.zeros(seq.max() + 1)
        np.maximum.at(seq_max, seq, column)
        order = np.argsort(-seq_max, kind="stable")[: min(3, np.count_nonzero(seq_max))]
        mine = sorted((r for r in top if r["feature"] == row["feature"]), key=lambda r: r["rank"])
        assert [r["activation"] for r in mine] == pytest.approx(seq_max[order].tolist(), rel=1e-4)
        if np.all(np.abs(np.diff(np.sort(seq_max)[::-1][:4])) > 1e-4):  # no near-ties to reorder
            assert [r["seq"] for r in mine] == order.tolist()


def test_the_runs_concepts_equal_a_numpy_recomputation(finished_run):
    """Splits, the SAE's detection, the dense baseline and the concept rankings, recomputed from
    the stored rows and the SAE's weights by brute force (tests/concept_oracle.py)."""
    workdir, _ = finished_run
    results = workdir / "results"
    top_n = 5  # config.yaml's concepts.top_n, the schema default
    documents = pq.read_table(results / "corpus/documents.parquet").to_pylist()
    assert sorted(d["split"] for d in documents) == ["calibration", "calibration", "test", "test"]
    assert [s["label"] for s in documents[3]["spans"]] == ["<b>tag</b>", "animal"]
    columns = pq.read_table(results / "corpus/tokens.parquet", columns=["doc", "special", "start", "end"])
    tokens = {name: columns[name].to_numpy() for name in columns.column_names}
    x, encoded, near_theta = sae_encoding(results, "tiny", "layer-1")
    kept = json.loads((results / "saes/tiny/units/unit_map.json").read_text())["kept_units"]
    sae_values = encoded[:, kept]
    dense_values = np.concatenate([x, -x], axis=1)  # dimension d taken as +x_d, then −x_d
    thresholds = {"sae": oracle.calibration_thresholds(sae_values, tokens, documents, 90, nonzero=True),
                  "dense": oracle.calibration_thresholds(dense_values, tokens, documents, 90, nonzero=False)}
    values = {"sae": sae_values, "dense": dense_values}
    unit_key = {"sae": lambda i: (kept[i], 1), "dense": lambda i: (i % x.shape[1], 1 if i < x.shape[1] else -1)}
    stored = {"sae": pq.read_table(results / "saes/tiny/analysis/detection.parquet").to_pylist(),
              "dense": pq.read_table(results / "activations/layer-1/dense_detection.parquet").to_pylist()}
    concepts = pq.read_table(results / "saes/tiny/analysis/concepts.parquet").to_pylist()

    labels = {"document": ["animal", "ml", "tools", "web"], "token": ["<b>tag</b>", "animal", "tool"]}
    for level, names in labels.items():
        scores = {}
        for split in ("calibration", "test"):
            items, carriers = oracle.scored_items(tokens, documents, level, split)
            for source in ("sae", "dense"):
                result = oracle.detection(values[source], thresholds[source], items, carriers, names)
                scores[source, split] = {(unit_key[source](i), label): v for (i, label), v in result.items()}
        for source in ("sae", "dense"):
            rows = {((r.get("unit", r.get("dim")), r.get("sign", 1)), r["label"], r["split"]): r
                    for r in stored[source] if r["level"] == level}
            assert len(rows) == 2 * len(scores[source, "calibration"])
            for split in ("calibration", "test"):
                for (unit, label), expected in scores[source, split].items():
                    if source == "sae" and near_theta[unit[0]]:
                        continue
                    row = rows[unit, label, split]
                    got = (row["precision"], row["recall"], row["f1"], row["auroc"])
                    assert got == pytest.approx(expected, rel=1e-5, abs=1e-9), (source, unit, label, split)
            for label in names:
                for criterion, column in (("f1", 2), ("auroc", 3)):
                    calibration = {unit: v for (unit, name), v in scores[source, "calibration"].items() if name == label}
                    ranked = oracle.best(calibration, column, top_n)
                    got = [r for r in concepts if (r["label"], r["level"], r["source"], r["criterion"])
                           == (label, level, source, criterion)]
                    assert [r["rank"] for r in got] == list(range(1, len(ranked) + 1))
                    # Compared by score (a tie may order equal units either way under float rounding).
                    assert [r[f"calibration_{criterion}"] for r in got] == pytest.approx(
                        [calibration[unit][column] for unit in ranked], rel=1e-5)
                    for r in got:
                        test = scores[source, "test"][(r["unit"], r["sign"]), label]
                        assert (r["test_f1"], r["test_auroc"]) == pytest.approx((test[2], test[3]), rel=1e-5, abs=1e-9)
    # The dense baseline ranks both signs of a dimension.
    assert {r["sign"] for r in concepts if r["source"] == "dense"} == {1, -1}


def dense_hook_rows(results, hook):
    """All rows of a hook's chunks, as stored, widened to float64 (tiny corpus: fits)."""
    chunks = sorted((results / "activations" / hook).glob("chunk-*.zarr"))
    return np.concatenate([zarr.open_group(str(c), mode="r")["acts"][:].astype(np.float64) for c in chunks])


def test_steering_ablation_and_vectors_of_the_run_equal_a_recomputation(finished_run):
    workdir, _ = finished_run
    results = workdir / "results"
    tokens = pq.read_table(results / "corpus/tokens.parquet").to_pandas()
    documents = pq.read_table(results / "corpus/documents.parquet").to_pylist()

    # Document vectors: the mean of each document's content-token rows.
    for hook in ("layer-1", "layer-2"):
        rows = dense_hook_rows(results, hook)
        stored = zarr.open_group(str(results / f"activations/{hook}/doc_vectors.zarr"), mode="r")["vectors"][:]
        content = ~tokens.special.to_numpy()
        expected = np.stack([rows[(tokens.doc.to_numpy() == d["doc"]) & content].mean(0) for d in documents])
        np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-5)
    # wide's label vector for "animal" (documents with it minus without), and its decoder cosines.
    has = np.array(["animal" in d["labels"] for d in documents])
    animal = expected[has].mean(0) - expected[~has].mean(0)
    table = pq.read_table(results / "activations/layer-2/label_vectors.parquet").to_pylist()
    row = next(r["row"] for r in table if r["label"] == "animal")
    vectors = read_safetensors(results / "activations/layer-2/label_vectors.safetensors")["vectors"]
    np.testing.assert_allclose(vectors[row], animal, rtol=1e-4, atol=1e-5)
    W_dec = read_safetensors(results / "saes/wide/sae_weights.safetensors")["W_dec"].astype(np.float64)
    alignment = pq.read_table(results / "saes/wide/analysis/label_alignment.parquet").to_pandas()
    cosines = alignment[alignment.label == "animal"].sort_values("feature").cosine.to_numpy()
    np.testing.assert_allclose(cosines, W_dec @ animal / np.linalg.norm(W_dec, axis=1) / np.linalg.norm(animal),
                               rtol=1e-4, atol=1e-5)

    # Steering: every (prompt, feature, alpha) of the config; alpha 0 adds nothing.
    push = pq.read_table(results / "saes/tiny/steering/push.parquet").to_pylist()
    assert [(r["prompt"], r["feature"], r["alpha"]) for r in push] == [
        (p, f, a) for p in ("The lazy", "Sparse") for f in (3, 5) for a in (0.0, 4.0)]
    assert all(r["steered"] == r["baseline"] and r["steered_ce"] == r["baseline_ce"] for r in push if r["alpha"] == 0)
    (towards,) = pq.read_table(results / "saes/wide/steering/towards-animal.parquet").to_pylist()
    assert towards["vector"] == "animal" and towards["feature"] is None and towards["prompt"] == "A <b>tag</b>"

    # Ablation: the first two features with examples plus the steered 3 and 5, over the top
    # examples' own windows.
    effects = pq.read_table(results / "saes/tiny/analysis/ablation.parquet").to_pandas()
    top = pq.read_table(results / "saes/tiny/analysis/top_examples.parquet").to_pandas()
    with_examples = sorted(top.feature.unique())
    assert sorted(effects.feature.unique()) == sorted(set(with_examples[:2]) | ({3, 5} & set(with_examples)))
    for (feature, rank), window in effects.groupby(["feature", "rank"]):
        example = top[(top.feature == feature) & (top["rank"] == rank)].iloc[0]
        assert rank < 2 and window.token.tolist() == list(example.tokens)
        np.testing.assert_allclose(window.activation.to_numpy(), example.acts, rtol=1e-3, atol=1e-3)
    logits = pq.read_table(results / "saes/tiny/analysis/ablation_logits.parquet").to_pandas()
    assert set(logits.feature) <= set(effects.feature) and set(logits.sign) == {"+", "-"}
