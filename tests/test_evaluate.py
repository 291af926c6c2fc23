import numpy as np
import pytest
import torch

from saeflow.chunks import Chunk
from saeflow.corpus import Document
from saeflow.evaluate import reconstruction_metrics, spliced_ce
from saeflow.model import load_model, load_tokenizer, n_layers
from saeflow.sae import BatchTopKSAE
from saeflow.sequences import tokenize_corpus
from saeflow.storage import ZarrChunkWriter, read_parquet_columns


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


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_splice_replaces_exactly_hidden_states_of_the_layer(tiny_lm, tmp_path, layer):
    tokens = tmp_path / "tokens.parquet"
    tokenize_corpus([Document("d", "The quick brown fox jumps over the lazy dog. " * 4)], load_tokenizer(tiny_lm), 24,
                    tokens, tmp_path / "d.parquet", tmp_path / "i.parquet")
    lm = load_model(tiny_lm, with_lm_head=True)
    chunk = Chunk("chunk-0000", 0, 10**6, 0, 10**6)
    identity = spliced_ce(IdentitySAE(), lm, layer, n_layers(tiny_lm), tokens, chunk)
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
