"""The BatchTopK sparse autoencoder (Bussmann et al. 2024) in one sitting: its two encodings,
decoding, training loss, the decoder-norm step, input-scale folding and safetensors I/O.

Shape letters in names: N tokens, D = d_in, F = d_sae (latents).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from saeflow import storage
from saeflow.errors import SaeflowError

WEIGHTS_FILE = "sae_weights.safetensors"
CFG_FILE = "cfg.json"
# cfg.json keys only the caller knows; save() adds the ones the model knows.
CALLER_CFG_KEYS = ("name", "model", "layer", "seed", "hook_name")


def batch_topk(acts_NF: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k*N largest entries of the whole batch, zero the rest: tokens share a budget of
    k latents each on average, so a hard token may use more than k and an easy one fewer."""
    n_tokens, d_sae = acts_NF.shape
    budget = k * n_tokens
    width = 4 * k  # candidates per token: one top-k over [N, d_sae] is 3x slower than two small ones
    if width < d_sae:
        candidates = acts_NF.topk(width, dim=1, sorted=False)
        top = candidates.values.flatten().topk(budget, sorted=False)
        rows = torch.div(top.indices, width, rounding_mode="floor")
        # Exact unless a token had all its candidates chosen (it might own even more of the top).
        if torch.bincount(rows, minlength=n_tokens).max() < width:
            columns = candidates.indices.flatten()[top.indices]
            return torch.zeros_like(acts_NF).index_put_((rows, columns), top.values)
    flat = acts_NF.flatten()
    top = flat.topk(budget, sorted=False)
    return torch.zeros_like(flat).scatter(0, top.indices, top.values).view_as(acts_NF)


@dataclass
class TrainingOutput:
    loss: torch.Tensor  # mse + aux_coeff * aux_loss, the quantity to minimise
    mse: torch.Tensor
    aux_loss: torch.Tensor
    feats_NF: torch.Tensor  # batch top-k encoding
    recon_ND: torch.Tensor


class BatchTopKSAE(torch.nn.Module):
    """x -> relu((x - b_dec) @ W_enc + b_enc), sparsified by top-k -> f @ W_dec + b_dec.

    Training uses the batch top-k (`encode_batch_topk`); the stored features and every
    evaluation use the per-token top-k (`encode_per_token`), as the artifact contract says.
    """

    def __init__(self, d_in: int, d_sae: int, k: int, seed: int = 0):
        super().__init__()
        _check_sizes(d_in, d_sae, k)
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        generator = torch.Generator().manual_seed(seed)
        W_dec_FD = torch.randn(d_sae, d_in, generator=generator)
        W_dec_FD /= W_dec_FD.norm(dim=1, keepdim=True)
        # Tied init (encoder = decoder transpose) starts every latent near a useful direction.
        self.W_enc = torch.nn.Parameter(W_dec_FD.T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.W_dec = torch.nn.Parameter(W_dec_FD)
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))

    def pre_activations(self, x_ND: torch.Tensor) -> torch.Tensor:
        return (x_ND - self.b_dec) @ self.W_enc + self.b_enc

    def encode_per_token(self, x_ND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token's k largest relu(pre) as (values [N, k], indices [N, k]), strongest first.
        A slot whose value is 0 is padding: its index is a valid but arbitrary latent (so the
        pair can be scattered as is); the feature store writes -1 there."""
        top = self.pre_activations(x_ND).relu().topk(self.k, dim=-1)
        return top.values, top.indices

    def encode_dense(self, x_ND: torch.Tensor) -> torch.Tensor:
        """The per-token top-k encoding as a dense [N, d_sae] tensor."""
        values_NK, indices_NK = self.encode_per_token(x_ND)
        dense_NF = torch.zeros(x_ND.shape[0], self.d_sae, dtype=values_NK.dtype, device=x_ND.device)
        return dense_NF.scatter(1, indices_NK, values_NK)

    def encode_batch_topk(self, x_ND: torch.Tensor) -> torch.Tensor:
        """The training encoding: dense [N, d_sae] with the k*N largest relu(pre) of the batch."""
        return batch_topk(self.pre_activations(x_ND).relu(), self.k)

    def decode(self, f_NF: torch.Tensor) -> torch.Tensor:
        return f_NF @ self.W_dec + self.b_dec

    def forward(self, x_ND: torch.Tensor) -> torch.Tensor:
        """Reconstruction under the per-token encoding (what evaluation and splicing use)."""
        return self.decode(self.encode_dense(x_ND))

    def training_losses(
        self, x_ND: torch.Tensor, dead_F: torch.Tensor, aux_k: int, aux_coeff: float
    ) -> TrainingOutput:
        """Reconstruction MSE (squared error summed over d_in, averaged over tokens) plus
        aux_coeff times the AuxK loss, which is 0 when no latent is dead."""
        acts_NF = self.pre_activations(x_ND).relu()
        feats_NF = batch_topk(acts_NF, self.k)
        recon_ND = self.decode(feats_NF)
        mse = (recon_ND - x_ND).pow(2).sum(-1).mean()
        aux_loss = self._aux_loss(acts_NF, x_ND - recon_ND.detach(), dead_F, aux_k)
        return TrainingOutput(mse + aux_coeff * aux_loss, mse, aux_loss, feats_NF, recon_ND)

    def _aux_loss(
        self, acts_NF: torch.Tensor, residual_ND: torch.Tensor, dead_F: torch.Tensor, aux_k: int
    ) -> torch.Tensor:
        """AuxK (Gao et al. 2024): each token's aux_k largest dead latents try to reconstruct
        what the live ones missed (the residual, detached), so dead latents get a gradient
        towards directions the model still lacks."""
        if not dead_F.any():
            return acts_NF.new_zeros(())
        dead_acts_NF = acts_NF * dead_F  # live latents are 0, so topk can only pick them as 0
        top = dead_acts_NF.topk(min(aux_k, self.d_sae), dim=-1)
        aux_NF = torch.zeros_like(dead_acts_NF).scatter(-1, top.indices, top.values)
        # No b_dec: the residual is a difference of reconstructions, b_dec cancels.
        return (aux_NF @ self.W_dec - residual_ND).pow(2).sum(-1).mean()

    # The decoder-norm step: rows of W_dec stay unit vectors, so a latent's activation is its
    # magnitude along the row. The trainer calls the first before and the second after each step.
    @torch.no_grad()
    def remove_decoder_parallel_grad_(self) -> None:
        """Remove from each W_dec row's gradient its component along that (unit) row: that part
        would only change the row's norm, which normalize_decoder_ undoes anyway, and it would
        skew Adam's moment estimates."""
        W_dec_FD, grad_FD = self.W_dec, self.W_dec.grad
        if grad_FD is not None:
            grad_FD -= (grad_FD * W_dec_FD).sum(dim=1, keepdim=True) * W_dec_FD

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)

    @torch.no_grad()
    def fold_input_scale_(self, scale: float) -> None:
        """Make an SAE trained on x * scale work on raw x, keeping W_dec's rows unit-norm.

        With s = scale > 0: pre(s x) = (s x - b_dec) @ W_enc + b_enc
                                     = s * ((x - b_dec/s) @ W_enc + b_enc/s).
        relu and top-k commute with multiplying by s > 0, so dividing b_enc and b_dec by s gives
        features f/s on raw x (the same latents fire, in raw-activation units), and
        (f/s) @ W_dec + b_dec/s = recon(s x) / s, the reconstruction in raw units.
        """
        if not (math.isfinite(scale) and scale > 0):
            raise SaeflowError(f"input scale={scale!r} is invalid: it must be a finite number > 0")
        self.b_enc /= scale
        self.b_dec /= scale

    def save(self, directory: str | Path, cfg: dict) -> dict:
        """Write sae_weights.safetensors and cfg.json into `directory`; return the cfg written.

        `cfg` must hold name, model, layer, seed and hook_name (e.g. "hidden_states.3"); d_in,
        d_sae, k, architecture and the SAELens-style keys come from the model itself."""
        missing = [key for key in CALLER_CFG_KEYS if key not in cfg]
        if missing:
            raise SaeflowError(f"SAE cfg lacks {missing}: pass them to save() (needed in cfg.json)")
        directory = Path(directory)
        arrays = {name: p.detach().cpu().numpy().astype(np.float32) for name, p in self.named_parameters()}
        storage.write_safetensors(directory / WEIGHTS_FILE, arrays, metadata={})
        full_cfg = {
            **cfg,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "k": self.k,
            "architecture": "batchtopk",
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "dtype": "float32",
        }
        storage.write_json(directory / CFG_FILE, full_cfg)
        return full_cfg

    @classmethod
    def load(cls, directory: str | Path) -> tuple[BatchTopKSAE, dict]:
        """Read an SAE written by save(); returns (sae on CPU, cfg)."""
        directory = Path(directory)
        cfg = storage.read_json(directory / CFG_FILE)
        missing = [key for key in ("d_in", "d_sae", "k") if key not in cfg]
        if missing:
            raise SaeflowError(f"{directory / CFG_FILE} lacks {missing}: rewrite it with save()")
        sae = cls(cfg["d_in"], cfg["d_sae"], cfg["k"], cfg.get("seed", 0))
        arrays = storage.read_safetensors(directory / WEIGHTS_FILE)
        with torch.no_grad():
            for name, param in sae.named_parameters():
                stored = arrays.get(name)
                if stored is None or stored.shape != param.shape:
                    found = None if stored is None else list(stored.shape)
                    raise SaeflowError(
                        f"{directory / WEIGHTS_FILE}: `{name}` has shape {found}, but cfg.json "
                        f"(d_in={cfg['d_in']}, d_sae={cfg['d_sae']}) needs {list(param.shape)}; "
                        "the two files come from different SAEs: retrain or restore the pair"
                    )
                param.copy_(torch.from_numpy(stored))
        return sae, cfg


def _check_sizes(d_in: int, d_sae: int, k: int) -> None:
    if not (isinstance(d_in, int) and d_in >= 1):
        raise SaeflowError(f"d_in={d_in!r} is invalid: it must be a positive integer (the layer width)")
    if not (isinstance(d_sae, int) and d_sae >= 2):
        raise SaeflowError(f"d_sae={d_sae!r} is invalid: set `d_sae` (or `expansion`) so that d_sae >= 2")
    if not (isinstance(k, int) and 1 <= k < d_sae):
        raise SaeflowError(f"k={k!r} is invalid: set `k` to an integer with 1 <= k < d_sae={d_sae}")
