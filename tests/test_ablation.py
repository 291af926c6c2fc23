"""Ablation effects on a tiny Llama, against the feature removed from the input embeddings (the
hook hidden_states.0) by hand with a numpy encoding."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from saeflow.ablation import ablated_features, ablation_job
from saeflow.corpus import Document
from saeflow.model import load_model, load_tokenizer
from saeflow.sae import BatchTopKSAE
from saeflow.sequences import tokenize_corpus
from test_interventions import numpy_encoding
from tiny_models import build_tiny_llama

CONTEXT = 3
# (feature, rank, seq, pos): top examples, the last one at a sequence's start.
EXAMPLES = [(2, 0, 1, 6), (2, 1, 0, 10), (2, 2, 2, 4), (6, 0, 2, 1), (6, 1, 1, 0), (9, 0, 0, 2)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    model_dir = build_tiny_llama(root / "model")
    texts = ["The quick brown fox jumps over the lazy dog. " * 2, "Sparse autoencoders find features.",
             "Snakemake builds only what is missing or stale."]
    tokenize_corpus([Document(str(i), t) for i, t in enumerate(texts)], load_tokenizer(model_dir), 24,
                    root / "tokens.parquet", root / "documents.parquet", root / "idf.parquet")
    BatchTopKSAE(32, 12, 2, seed=4).save(root / "sae", {"name": "s", "model": "tiny", "hook": "h",
                                                        "hook_spec": "hidden_states.0", "seed": 0,
                                                        "exclude_special_tokens": True})
    columns = list(zip(*EXAMPLES))
    pq.write_table(pa.table({"feature": pa.array(columns[0], pa.int64()), "rank": pa.array(columns[1], pa.int32()),
                             "seq": pa.array(columns[2], pa.int32()), "pos": pa.array(columns[3], pa.int32())}),
                   root / "top_examples.parquet")
    pq.write_table(pa.table({"feature": list(range(12)), "n_active": [10] * 12, "max": [1.0] * 12}),
                   root / "stats.parquet")
    pq.write_table(pa.table({"feature": list(range(12)), "label": [f"l{f}" for f in range(12)]}),
                   root / "labels.parquet")
    return root, model_dir


def run(setup, tmp_path, settings, experiments=()):
    root, model_dir = setup
    analysis = {"top_examples": root / "top_examples.parquet", "feature_stats": root / "stats.parquet",
                "labels": root / "labels.parquet"}
    ablation_job(root / "sae", model_dir, model_dir, analysis, root / "tokens.parquet", tmp_path / "a.parquet",
                 tmp_path / "l.parquet", {"top_logits": 4, "batch_size": 3} | settings, CONTEXT, list(experiments))
    return pq.read_table(tmp_path / "a.parquet").to_pylist(), pq.read_table(tmp_path / "l.parquet").to_pylist()


def oracle(setup, feature, seq, pos):
    """Per window position (token, activation, loss, effect), and the summed clean - ablated
    log-probs over the feature's active positions with their count."""
    root, model_dir = setup
    lm, sae = load_model(model_dir), BatchTopKSAE.load(root / "sae")[0]
    tokens = pq.read_table(root / "tokens.parquet").to_pandas()
    rows = tokens[tokens.seq == seq].sort_values("pos")
    lo, hi = max(0, pos - CONTEXT), min(len(rows), pos + CONTEXT + 1)
    ids = torch.tensor(rows.token_id.to_numpy()[:hi].astype(np.int64))
    with torch.no_grad():
        embeds = lm.get_input_embeddings()(ids)
        active = numpy_encoding(sae, embeds.double().numpy())[:, feature]
        ablated_embeds = embeds - torch.from_numpy(active).float()[:, None] * sae.W_dec[feature]
        clean = lm(inputs_embeds=embeds[None]).logits[0].double().log_softmax(-1).numpy()
        ablated = lm(inputs_embeds=ablated_embeds[None]).logits[0].double().log_softmax(-1).numpy()
    window = []
    for p in range(lo, hi):
        loss = effect = None
        if p > 0:
            loss = -clean[p - 1, ids[p]]
            effect = -ablated[p - 1, ids[p]] - loss
        window.append((rows.token.iloc[p], active[p], loss, effect))
    on = active > 0
    return window, (clean - ablated)[on].sum(0), int(on.sum())


def test_loss_effects_and_moved_logits_equal_a_hand_ablation(setup, tmp_path):
    effects, logits = run(setup, tmp_path, {"max_features": 2, "examples": 2}, [{"name": "x", "features": [9]}])
    # The first two features with examples (2, 6) and the steered one (9), two examples each.
    assert sorted({(r["feature"], r["rank"]) for r in effects}) == [(2, 0), (2, 1), (6, 0), (6, 1), (9, 0)]
    sums, counts = {}, {}
    for feature, rank, seq, pos in EXAMPLES:
        if rank >= 2:
            continue
        window, moved, n_on = oracle(setup, feature, seq, pos)
        got = [r for r in effects if (r["feature"], r["rank"]) == (feature, rank)]
        assert [r["pos"] for r in got] == list(range(max(0, pos - CONTEXT), max(0, pos - CONTEXT) + len(window)))
        assert all(r["seq"] == seq for r in got)
        for row, (token, active, loss, effect) in zip(got, window):
            assert row["token"] == token
            assert row["activation"] == pytest.approx(active, abs=1e-4)
            if loss is None:
                assert row["loss"] is None and row["loss_effect"] is None
            else:
                assert row["loss"] == pytest.approx(loss, rel=1e-4)
                assert row["loss_effect"] == pytest.approx(effect, abs=1e-4)
        sums[feature] = sums.get(feature, 0) + moved
        counts[feature] = counts.get(feature, 0) + n_on
    assert any(abs(r["loss_effect"] or 0) > 1e-3 for r in effects)  # the ablation did something
    for feature in sums:
        mean = sums[feature] / counts[feature]
        for sign, order in (("+", np.argsort(-mean)[:4]), ("-", np.argsort(mean)[:4])):
            got = [r for r in logits if r["feature"] == feature and r["sign"] == sign]
            assert [r["token_id"] for r in got] == order.tolist()
            np.testing.assert_allclose([r["effect"] for r in got], mean[order], rtol=1e-3, atol=1e-5)
            assert [r["rank"] for r in got] == [0, 1, 2, 3]


def test_features_are_the_first_with_examples_plus_the_steered(setup):
    path = setup[0] / "top_examples.parquet"
    assert ablated_features(path, 1, []) == [2]
    assert ablated_features(path, 0, [9, 11]) == [9]  # 11 has no examples
    assert ablated_features(path, 10, []) == [2, 6, 9]


def test_no_feature_gives_empty_tables(setup, tmp_path):
    effects, logits = run(setup, tmp_path, {"max_features": 0, "examples": 1})
    assert effects == [] and logits == []
