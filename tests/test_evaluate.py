import copy

import numpy as np
import pytest
import torch

from saeflow.chunks import Chunk
from saeflow.corpus import Document
from saeflow.evaluate import evaluate_sae_job, reconstruction_metrics, spliced_ce
from saeflow.model import load_model, load_tokenizer, n_layers
from saeflow.sae import BatchTopKSAE
from saeflow.sequences import tokenize_corpus
from saeflow.storage import ZarrChunkWriter, read_json, read_parquet_columns
from tiny_models import build_lora_adapter, build_tiny_llama


@pytest.mark.parametrize("encoding", ["threshold", "topk"])
def test_reconstruction_metrics_match_numpy(tmp_path, encoding):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32) + 3.0
    with ZarrChunkWriter(tmp_path / "c.zarr", {"token_start": 0}) as store:
        store.create("acts", x.shape, "float32")[:] = x
    sae = BatchTopKSAE(8, 20, 3, seed=1, encoding=encoding)
    theta = 0.4 if encoding == "threshold" else 0.0
    with torch.no_grad():
        sae.b_enc.copy_(torch.linspace(-3, 0.5, 20))
        sae.threshold.fill_(theta)
    W_enc, b_enc, W_dec, b_dec = (p.detach().numpy().astype(np.float64) for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
    excluded = np.array([0, 17, 59])  # e.g. special-token rows
    kept = np.delete(x, excluded, axis=0).astype(np.float64)
    pre = (kept - b_dec) @ W_enc + b_enc
    if encoding == "threshold":
        f = np.where(pre > theta, pre, 0)
    else:
        acts = np.maximum(pre, 0)
        top = np.argsort(-acts, axis=1)[:, :3]
        f = np.zeros_like(acts)
        np.put_along_axis(f, top, np.take_along_axis(acts, top, axis=1), axis=1)
    recon = f @ W_dec + b_dec
    metrics = reconstruction_metrics(sae, tmp_path / "c.zarr", excluded)
    assert metrics["holdout_tokens"] == 57
    assert metrics["fvu"] == pytest.approx(((kept - recon) ** 2).sum() / ((kept - kept.mean(0)) ** 2).sum(), rel=1e-5)
    assert metrics["l0"] == pytest.approx((f > 0).sum(1).mean())
    assert metrics["dead_fraction"] == pytest.approx(1 - (f > 0).any(0).mean())
    assert 0 < metrics["dead_fraction"] < 1


class IdentitySAE(torch.nn.Module):
    """Reconstructs perfectly: splicing it in must give the clean CE exactly."""

    W_enc = torch.zeros(1, 1)

    def forward(self, x):
        return x


def test_clean_ce_covers_exactly_the_first_sequences_each_run_alone(tiny_lm, tmp_path):
    """max_sequences takes the chunk's first sequences whole: each run alone by hand gives the CE."""
    tokens = tmp_path / "tokens.parquet"
    tokenize_corpus([Document("d", "The quick brown fox jumps over the lazy dog. " * 6)], load_tokenizer(tiny_lm), 16,
                    tokens, tmp_path / "d.parquet", tmp_path / "i.parquet")
    table = read_parquet_columns(tokens, ["seq", "token_id"])
    assert table["seq"].max() >= 4  # more sequences than are taken
    lm = load_model(tiny_lm)
    losses = []
    with torch.no_grad():
        for seq in (0, 1):
            ids = torch.from_numpy(table["token_id"][table["seq"] == seq].astype(np.int64))[None]
            logits = lm(input_ids=ids).logits[0, :-1]
            losses.append(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none"))
    expected = float(torch.cat(losses).mean())
    result = spliced_ce(IdentitySAE(), lm, "hidden_states.1", tokens, Chunk("chunk-0000", 0, len(table["seq"]), 0, 99),
                        max_sequences=2)
    assert result["ce_clean"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_splice_replaces_exactly_hidden_states_of_the_layer(tiny_lm, tmp_path, layer):
    tokens = tmp_path / "tokens.parquet"
    tokenize_corpus([Document("d", "The quick brown fox jumps over the lazy dog. " * 4)], load_tokenizer(tiny_lm), 24,
                    tokens, tmp_path / "d.parquet", tmp_path / "i.parquet")
    lm = load_model(tiny_lm)
    chunk = Chunk("chunk-0000", 0, 10**6, 0, 10**6)
    identity = spliced_ce(IdentitySAE(), lm, f"hidden_states.{layer}", tokens, chunk)
    assert identity["ce_spliced"] == pytest.approx(identity["ce_clean"], abs=1e-6)
    assert identity["ce_zero"] != pytest.approx(identity["ce_clean"], abs=1e-3)
    assert identity["ce_recovered"] == pytest.approx(1.0, abs=1e-5)

    # Oracle for the zero ablation: with hidden_states[layer] all zero, every position carries the
    # same vector through the remaining blocks (attention over equal values is the same whatever
    # the mask), so one position run by hand gives the logits of all of them.
    table = read_parquet_columns(tokens, ["pos", "token_id"])
    targets = torch.from_numpy(table["token_id"][table["pos"] > 0].astype(np.int64))
    with torch.no_grad():
        h = torch.zeros(1, 1, lm.config.n_embd)
        if layer < n_layers(tiny_lm):
            for block in lm.transformer.h[layer:]:
                out = block(h)
                h = out[0] if isinstance(out, tuple) else out
            h = lm.transformer.ln_f(h)
        log_probs = torch.log_softmax(lm.lm_head(h)[0, 0], dim=-1)
    assert identity["ce_zero"] == pytest.approx(-log_probs[targets].mean().item(), rel=1e-5)


def next_token_ce(model, tokens) -> float:
    """Mean next-token CE over all sequences, each run alone: the oracle for batched CE."""
    table = read_parquet_columns(tokens, ["seq", "token_id"])
    losses = []
    with torch.no_grad():
        for seq in np.unique(table["seq"]):
            ids = torch.from_numpy(table["token_id"][table["seq"] == seq].astype(np.int64))
            log_probs = torch.log_softmax(model(input_ids=ids[None]).logits[0, :-1].double(), -1)
            losses.append(-log_probs[torch.arange(len(ids) - 1), ids[1:]])
    return torch.cat(losses).mean().item()


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory):
    """A tiny Llama, a LoRA adapter for it, and a held-out corpus of several uneven sequences."""
    root = tmp_path_factory.mktemp("llama_run")
    model_dir = build_tiny_llama(root / "model")
    adapter = build_lora_adapter(model_dir, root / "adapter")
    tokens = root / "tokens.parquet"
    texts = ["The quick brown fox jumps over the lazy dog. " * 3, "Sparse autoencoders.", "Snakemake builds " * 5]
    tokenize_corpus([Document(str(i), t) for i, t in enumerate(texts)], load_tokenizer(model_dir), 16,
                    tokens, root / "d.parquet", root / "i.parquet")
    return model_dir, adapter, tokens


def test_splice_at_a_module_output_equals_the_model_with_that_module_silenced(llama_run):
    model_dir, _, tokens = llama_run
    lm = load_model(model_dir)
    chunk = Chunk("chunk-0000", 0, 10**6, 0, 10**6)
    result = spliced_ce(IdentitySAE(), lm, "model.layers.1.mlp", tokens, chunk, batch_size=2)
    silenced = copy.deepcopy(lm)
    with torch.no_grad():
        silenced.model.layers[1].mlp.down_proj.weight.zero_()  # the MLP then outputs zeros
    assert result["ce_clean"] == pytest.approx(next_token_ce(lm, tokens), rel=1e-5)
    assert result["ce_spliced"] == pytest.approx(result["ce_clean"], abs=1e-6)
    assert result["ce_zero"] == pytest.approx(next_token_ce(silenced, tokens), rel=1e-5)
    assert result["ce_zero"] != pytest.approx(result["ce_clean"], abs=1e-3)


def saved_sae(directory, hook_spec, d_in):
    BatchTopKSAE(d_in, 16, 2, seed=0).save(directory, {"name": "s", "model": "tiny", "hook": "h",
                                                       "hook_spec": hook_spec, "seed": 0,
                                                       "exclude_special_tokens": True})
    return directory


@pytest.mark.parametrize("hook_spec, d_in", [("model.layers.0.self_attn.q_proj.lora_A.default", 4),
                                             ("model.layers.0.mlp:input", 32),
                                             (["hidden_states.1", "hidden_states.2"], 64)])
def test_eval_job_splices_one_module_output_with_the_adapter_and_skips_inputs_and_lists(
        llama_run, tmp_path, hook_spec, d_in):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model_dir, adapter, tokens = llama_run
    n_tokens = len(read_parquet_columns(tokens, ["seq"])["seq"])
    with ZarrChunkWriter(tmp_path / "holdout.zarr", {"token_start": 0}) as store:
        store.create("acts", (n_tokens, d_in), "float32")[:] = np.random.default_rng(0).normal(size=(n_tokens, d_in))
    chunk = Chunk("chunk-0000", 0, n_tokens, 0, 10**6)
    metrics = evaluate_sae_job(saved_sae(tmp_path / "sae", hook_spec, d_in), tmp_path / "holdout.zarr", chunk, tokens,
                               str(model_dir), tmp_path / "eval.json", adapter=str(adapter))
    assert read_json(tmp_path / "eval.json") == metrics
    if not isinstance(hook_spec, str) or hook_spec.endswith(":input"):
        assert not any(key.startswith("ce_") for key in metrics)
        return
    # Clean CE is the adapted model's, as PEFT's own loader builds it.
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(model_dir)), str(adapter)).eval()
    assert metrics["ce_clean"] == pytest.approx(next_token_ce(reference, tokens), rel=1e-5)
    assert metrics["ce_clean"] != pytest.approx(next_token_ce(load_model(model_dir), tokens), abs=1e-3)
    assert {"ce_spliced", "ce_zero", "ce_recovered"} <= set(metrics)
