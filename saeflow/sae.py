"""The BatchTopK sparse autoencoder (Bussmann et al. 2024) in one sitting: the training encoding
(batch top-k), the inference encodings (a learned threshold, or per-token top-k), decoding, the
training loss with AuxK, the decoder-norm step, input-scale folding and safetensors I/O.

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
ENCODINGS = ("threshold", "topk")
# cfg.json keys only the caller knows; save() adds the ones the model knows.
CALLER_CFG_KEYS = ("name", "model", "hook", "hook_spec", "seed")


def batch_topk(acts_NF: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices (row * d_sae + column, ascending) of the k*N largest entries of the whole
    batch: tokens share a budget of k latents each on average, so a hard token may use more than
    k and an easy one fewer."""
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
            return (rows * d_sae + columns).sort().values
    return acts_NF.flatten().topk(budget, sorted=False).indices.sort().values


def topk_per_token(acts_NF: torch.Tensor, k: int) -> torch.Tensor:
    """Each token's k largest entries, the rest zeroed (dense [N, F])."""
    top = acts_NF.topk(k, dim=-1)
    return torch.zeros_like(acts_NF).scatter(-1, top.indices, top.values)


@dataclass
class TrainingOutput:
    loss: torch.Tensor  # mse + aux_coeff * aux_loss, the quantity to minimise
    mse: torch.Tensor
    aux_loss: torch.Tensor  # normalised AuxK loss (0 when no latent is dead)
    recon_ND: torch.Tensor  # reconstruction under batch top-k
    fired_F: torch.Tensor  # bool: latents with a nonzero kept activation in this batch
    l0: torch.Tensor  # nonzero kept activations per token
    min_kept: torch.Tensor  # smallest nonzero activation the batch kept (θ's sample; 0 if none)


class BatchTopKSAE(torch.nn.Module):
    """x -> pre = (x - b_dec) @ W_enc + b_enc -> sparse f -> f @ W_dec + b_dec.

    Training sparsifies relu(pre) by batch top-k (`training_losses`); inference (`encode`) uses
    the SAE's `encoding`: "threshold" keeps pre where pre > threshold (JumpReLU form, θ learned
    in training), "topk" keeps each token's k largest relu(pre).
    """

    def __init__(self, d_in: int, d_sae: int, k: int | None, seed: int = 0, encoding: str = "threshold"):
        super().__init__()
        _check_sizes(d_in, d_sae, k)
        if encoding not in ENCODINGS:
            raise SaeflowError(f"encoding={encoding!r} is invalid: use one of {ENCODINGS}")
        if k is None and encoding == "topk":
            raise SaeflowError("encoding 'topk' needs k")
        self.d_in, self.d_sae, self.k, self.encoding = d_in, d_sae, k, encoding
        generator = torch.Generator().manual_seed(seed)
        W_dec_FD = torch.randn(d_sae, d_in, generator=generator)
        W_dec_FD /= W_dec_FD.norm(dim=1, keepdim=True)
        # Tied init (encoder = decoder transpose) starts every latent near a useful direction.
        self.W_enc = torch.nn.Parameter(W_dec_FD.T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.W_dec = torch.nn.Parameter(W_dec_FD)
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
        # θ per latent (one shared value for a BatchTopK SAE); not trained by gradient.
        self.register_buffer("threshold", torch.zeros(d_sae))

    def pre_activations(self, x_ND: torch.Tensor) -> torch.Tensor:
        return (x_ND - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x_ND: torch.Tensor) -> torch.Tensor:
        """The inference encoding, dense [N, d_sae]: the one function that eval, the feature
        store and CE splicing use."""
        pre_NF = self.pre_activations(x_ND)
        if self.encoding == "threshold":
            # relu first: a latent never fires below 0, whatever θ (as SAELens' JumpReLU).
            return pre_NF.relu() * (pre_NF > self.threshold)
        return topk_per_token(pre_NF.relu(), self.k)

    def decode(self, f_NF: torch.Tensor) -> torch.Tensor:
        return f_NF @ self.W_dec + self.b_dec

    def forward(self, x_ND: torch.Tensor) -> torch.Tensor:
        """Reconstruction under the inference encoding."""
        return self.decode(self.encode(x_ND))

    def training_losses(
        self, x_ND: torch.Tensor, dead_F: torch.Tensor, aux_k: int, aux_coeff: float
    ) -> TrainingOutput:
        """Reconstruction MSE (squared error summed over d_in, averaged over tokens) plus
        aux_coeff times the normalised AuxK loss.

        Written for speed on CPUs, where dense [N, F] x [F, D] products dominate a step: the
        input takes no gradient (b_dec's reaches the encoder through b_dec @ W_enc, not through
        a gradient of x - b_dec), and the kept latents are decoded by embedding_bag, as
        sparsify's fallback decoder does, so only the encoder's two products stay dense."""
        acts_NF = (x_ND @ self.W_enc + (self.b_enc - self.b_dec @ self.W_enc)).relu()
        with torch.no_grad():
            kept = batch_topk(acts_NF, self.k)
        columns = kept % self.d_sae
        values = acts_NF.flatten()[kept]
        offsets = torch.searchsorted(torch.div(kept, self.d_sae, rounding_mode="floor"),
                                     torch.arange(len(x_ND), device=x_ND.device))
        recon_ND = self.decode_entries(columns, values, offsets) + self.b_dec
        mse = (recon_ND - x_ND).pow(2).sum(-1).mean()
        aux_loss = self._aux_loss(acts_NF, x_ND - recon_ND.detach(), dead_F, aux_k)
        with torch.no_grad():
            positive = values > 0
            fired_F = torch.zeros(self.d_sae, dtype=torch.bool, device=x_ND.device)
            fired_F[columns[positive]] = True
            min_kept = values[positive].min() if positive.any() else values.new_zeros(())
        return TrainingOutput(mse + aux_coeff * aux_loss, mse, aux_loss, recon_ND, fired_F,
                              positive.sum() / len(x_ND), min_kept)

    def decode_entries(self, columns: torch.Tensor, values: torch.Tensor, offsets: torch.Tensor | None = None):
        """Sum of values * W_dec[columns] per token, no b_dec: entries given flat with each
        token's start in `offsets`, or as [N, n] arrays (one row per token)."""
        return torch.nn.functional.embedding_bag(columns, self.W_dec, offsets, mode="sum", per_sample_weights=values)

    def _aux_loss(
        self, acts_NF: torch.Tensor, residual_ND: torch.Tensor, dead_F: torch.Tensor, aux_k: int
    ) -> torch.Tensor:
        """AuxK (Gao et al. 2024, appendix A.2): each token's top dead latents (at most aux_k, and
        no more than are dead) try to reconstruct what the live ones missed (the detached
        residual), so dead latents get a gradient towards directions the model still lacks.
        Divided by the residual's variance as OpenAI's sparse_autoencoder and dictionary_learning
        do, so the loss is a fraction of unexplained variance whatever its scale."""
        dead = dead_F.nonzero().squeeze(1)
        if len(dead) == 0:
            return acts_NF.new_zeros(())
        top = acts_NF[:, dead].topk(min(aux_k, len(dead)), dim=-1)  # only dead columns: cheap when few
        # No b_dec: the residual is a difference of reconstructions, b_dec cancels.
        error = (self.decode_entries(dead[top.indices], top.values) - residual_ND).pow(2).sum(-1).mean()
        variance = (residual_ND - residual_ND.mean(dim=0)).pow(2).sum(-1).mean()
        return torch.nan_to_num(error / variance)

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
        relu, top-k and the comparison with θ commute with multiplying by s > 0, so dividing
        b_enc, b_dec and θ by s gives features f/s on raw x (the same latents fire, in
        raw-activation units), and (f/s) @ W_dec + b_dec/s = recon(s x) / s.
        """
        if not (math.isfinite(scale) and scale > 0):
            raise SaeflowError(f"input scale={scale!r} is invalid: it must be a finite number > 0")
        self.b_enc /= scale
        self.b_dec /= scale
        self.threshold /= scale

    def save(self, directory: str | Path, cfg: dict) -> dict:
        """Write sae_weights.safetensors and cfg.json into `directory`; return the cfg written.

        `cfg` must hold name, model, hook, hook_spec and seed; sizes, the encoding and the keys
        SAELens' loader needs (`architecture` among them: how the saved SAE runs) come from the
        model itself."""
        from saeflow.saelens_format import saelens_cfg

        missing = [key for key in CALLER_CFG_KEYS if key not in cfg]
        if missing:
            raise SaeflowError(f"SAE cfg lacks {missing}: pass them to save() (needed in cfg.json)")
        directory = Path(directory)
        arrays = {name: t.detach().cpu().numpy().astype(np.float32) for name, t in self.state_dict().items()}
        storage.write_safetensors(directory / WEIGHTS_FILE, arrays, metadata={})
        full_cfg = {
            **saelens_cfg(d_in=self.d_in, d_sae=self.d_sae, encoding=self.encoding, k=self.k,
                          hook_name=_hook_name(cfg["hook_spec"]), model_name=cfg["model"]),
            **cfg,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "k": self.k,
            "trained_as": cfg.get("trained_as", "batchtopk"),
            "encoding": self.encoding,
        }
        storage.write_json(directory / CFG_FILE, full_cfg)
        return full_cfg

    @classmethod
    def load(cls, directory: str | Path, cfg_keys: tuple[str, ...] = ()) -> tuple[BatchTopKSAE, dict]:
        """Read an SAE written by save(); returns (sae on CPU, cfg), cfg checked to hold the
        sizes and the caller's `cfg_keys`."""
        directory = Path(directory)
        retrain = f"delete {directory} and rerun the workflow to retrain the SAE"
        cfg = storage.read_json(directory / CFG_FILE, keys=("d_in", "d_sae", "k", "encoding", *cfg_keys), fix=retrain)
        try:
            sae = cls(cfg["d_in"], cfg["d_sae"], cfg["k"], cfg.get("seed", 0), cfg["encoding"])
        except SaeflowError as err:
            raise SaeflowError(f"{directory / CFG_FILE}: {err}") from None
        # The shapes cfg.json's sizes give: another shape means the two files come from different SAEs.
        shapes = {name: tuple(tensor.shape) for name, tensor in sae.state_dict().items()}
        arrays = storage.read_safetensors(directory / WEIGHTS_FILE, shapes, fix=retrain)
        with torch.no_grad():
            for name, tensor in sae.state_dict(keep_vars=True).items():
                tensor.copy_(torch.from_numpy(arrays[name]))
        return sae, cfg


def _check_sizes(d_in: int, d_sae: int, k: int | None) -> None:
    if not (isinstance(d_in, int) and d_in >= 1):
        raise SaeflowError(f"d_in={d_in!r} is invalid: it must be a positive integer (the layer width)")
    if not (isinstance(d_sae, int) and d_sae >= 2):
        raise SaeflowError(f"d_sae={d_sae!r} is invalid: set `d_sae` (or `expansion`) so that d_sae >= 2")
    if k is None:  # an SAE that never trains here and encodes by threshold (a pretrained JumpReLU)
        return
    if not (isinstance(k, int) and 1 <= k < d_sae):
        raise SaeflowError(f"k={k!r} is invalid: set `k` to an integer with 1 <= k < d_sae={d_sae}")


def _hook_name(spec) -> str:
    """SAELens names one hook with a string: a list hook's specs joined by '+'."""
    return spec if isinstance(spec, str) else "+".join(spec)
