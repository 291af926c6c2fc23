"""Training a BatchTopKSAE: Adam with linear warm-up and decay, gradient clipping, dead-latent
tracking for the AuxK loss, the running estimate of the inference threshold θ, periodic log rows,
and resumable checkpoints (safetensors + JSON, never unpickled).

The trainer sees activations multiplied by `input_scale` (see unit_mean_squared_norm_scale), so
the loss and learning rate mean the same whatever the model's activation norms; the returned
SAE has the scale folded back in and works on raw activations.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from saeflow import storage
from saeflow.errors import SaeflowError
from saeflow.sae import ENCODINGS, BatchTopKSAE, TrainingOutput

log = logging.getLogger(__name__)

CHECKPOINT_JSON = "checkpoint.json"
B_DEC_INITS = ("geometric_median", "mean")

BatchSource = Callable[[int], Iterator[np.ndarray]]
# progress(step, total_steps, log_row): called after every step; log_row is None between logs.
Progress = Callable[[int, int, "dict | None"], None]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    k: int
    d_sae: int
    total_tokens: int  # training runs total_tokens // batch_size steps
    lr: float | None = None  # None: 2e-4 / sqrt(d_sae / 2**14), Gao et al.'s 1/sqrt(latents) rule
    batch_size: int = 4096
    warmup_fraction: float = 0.05  # of the steps: lr rises linearly from lr/warmup to lr
    decay_fraction: float = 0.2  # the last steps: lr falls linearly towards 0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    dead_tokens: int = 10_000_000  # a latent is dead after this many training tokens without firing
    aux_k: int | None = None  # None: d_in // 2, capped at d_sae
    aux_coeff: float = 1 / 32
    max_grad_norm: float | None = 1.0  # None: no clipping
    threshold_window: float = 0.1  # θ averages about this fraction of the steps, the latest ones
    encoding: str = "threshold"  # the saved SAE's inference encoding: threshold | topk
    seed: int = 0
    b_dec_init: str = "geometric_median"  # or "mean"
    checkpoint_every: int = 1000  # steps
    log_every: int = 100  # steps

    def __post_init__(self):
        _require(isinstance(self.total_tokens, int) and self.total_tokens >= self.batch_size >= 1,
                 "total_tokens/batch_size", (self.total_tokens, self.batch_size),
                 "need integers with total_tokens >= batch_size >= 1")
        _require(self.lr is None or self.lr > 0, "lr", self.lr, "use a positive learning rate or null")
        _require(0 <= self.warmup_fraction and 0 <= self.decay_fraction
                 and self.warmup_fraction + self.decay_fraction <= 1,
                 "warmup_fraction/decay_fraction", (self.warmup_fraction, self.decay_fraction),
                 "use fractions >= 0 that sum to at most 1")
        _require(self.dead_tokens >= 1, "dead_tokens", self.dead_tokens, "use a positive token count")
        _require(self.aux_k is None or self.aux_k >= 1, "aux_k", self.aux_k, "use a positive integer or null")
        _require(self.aux_coeff >= 0, "aux_coeff", self.aux_coeff, "use a number >= 0")
        _require(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm,
                 "use a positive norm or null")
        _require(0 < self.threshold_window <= 1, "threshold_window", self.threshold_window, "use a fraction in (0, 1]")
        _require(self.encoding in ENCODINGS, "encoding", self.encoding, f"use one of {ENCODINGS}")
        _require(self.b_dec_init in B_DEC_INITS, "b_dec_init", self.b_dec_init, f"use one of {B_DEC_INITS}")
        _require(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, "use a step count >= 1")
        _require(self.log_every >= 1, "log_every", self.log_every, "use a step count >= 1")

    @property
    def total_steps(self) -> int:
        return self.total_tokens // self.batch_size

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(self.d_sae / 2**14)

    def resolved_aux_k(self, d_in: int) -> int:
        return min(self.aux_k if self.aux_k is not None else max(d_in // 2, 1), self.d_sae)

    def warmup_steps(self) -> int:
        return max(1, round(self.warmup_fraction * self.total_steps))

    def threshold_window_steps(self) -> int:
        return max(1, round(self.threshold_window * self.total_steps))


def _require(ok: bool, key: str, value, fix: str) -> None:
    if not ok:
        raise SaeflowError(f"training setting `{key}`={value!r} is invalid: {fix}")


def unit_mean_squared_norm_scale(sample: np.ndarray) -> float:
    """The scale s with mean over rows of ||s * x||^2 == 1 (squared L2 norm, not divided by d_in)."""
    mean_sq = float(np.mean(np.sum(np.square(sample, dtype=np.float64), axis=1)))
    if not (math.isfinite(mean_sq) and mean_sq > 0):
        raise SaeflowError(f"cannot scale activations with mean squared norm {mean_sq}: the sample "
                           "is empty, all zero or not finite; check the activation chunks")
    return 1 / math.sqrt(mean_sq)


def geometric_median(points_ND: np.ndarray, max_iters: int = 100, tol: float = 1e-6) -> np.ndarray:
    """Weiszfeld's algorithm: re-weight the mean by 1/distance until it stops moving. Unlike the
    mean, it is not dragged by the few huge-norm tokens (BOS, CLS) common in residual streams."""
    points_ND = points_ND.astype(np.float64)
    median_D = points_ND.mean(axis=0)
    for _ in range(max_iters):
        weights_N = 1 / np.maximum(np.linalg.norm(points_ND - median_D, axis=1), 1e-12)
        new_D = weights_N @ points_ND / weights_N.sum()
        moved = np.linalg.norm(new_D - median_D)
        median_D = new_D
        if moved <= tol * max(np.linalg.norm(median_D), 1e-12):
            break
    return median_D


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): warm-up, constant, linear decay."""
    total = cfg.total_steps
    warmup = cfg.warmup_steps()
    decay = round(cfg.decay_fraction * total)
    if step < warmup:
        return cfg.resolved_lr() * (step + 1) / warmup
    if step >= total - decay:
        return cfg.resolved_lr() * (total - step) / decay
    return cfg.resolved_lr()


def training_step(
    sae: BatchTopKSAE, optimizer: torch.optim.Optimizer, x_ND: torch.Tensor, dead_F: torch.Tensor,
    aux_k: int, aux_coeff: float, max_grad_norm: float | None,
) -> TrainingOutput:
    """One Adam step with the decoder-norm step around it; returns the step's losses.

    The gradient's global norm is clipped (SAELens' trainer and OpenAI's sparse_autoencoder clip
    at 1): a batch of rare huge-norm tokens then cannot throw the latents off in one step."""
    out = sae.training_losses(x_ND, dead_F, aux_k, aux_coeff)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    sae.remove_decoder_parallel_grad_()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), max_grad_norm)
    optimizer.step()
    sae.normalize_decoder_()
    return out


def train_sae(
    batch_source: BatchSource,
    d_in: int,
    cfg: TrainConfig,
    *,
    init_sample: np.ndarray,
    input_scale: float,
    checkpoint_dir: str | Path | None = None,
    stop_after_steps: int | None = None,
    progress: Progress | None = None,
    device: str | torch.device = "cpu",
) -> tuple[BatchTopKSAE, list[dict]]:
    """Train an SAE on `cfg.total_steps` batches; return it (on CPU, on raw activations, unit
    decoder rows) with its log rows.

    batch_source(start_step) yields raw float32 arrays [batch_size, d_in], the same stream on
    every call, starting at batch `start_step`. init_sample: raw activations for b_dec's init.
    With checkpoint_dir, a checkpoint there with the same settings (cfg, d_in, input_scale) is
    resumed; one with other settings is ignored and overwritten. The caller must keep the data
    behind batch_source unchanged between the runs. stop_after_steps (for tests) returns after
    that many steps in all, as if the run had been killed there: only the periodic checkpoints
    are on disk, and a resumed run redoes the steps since the last one.
    progress(step, total_steps, log_row) runs after every step (log_row None between logs),
    e.g. `lambda step, total, row: bar.update()` for a tqdm bar. Bit-identical for a seed on
    CPU with the same thread count.
    """
    _require(math.isfinite(input_scale) and input_scale > 0, "input_scale", input_scale,
             "use a finite scale > 0 (see unit_mean_squared_norm_scale)")
    device = torch.device(device)
    sae = BatchTopKSAE(d_in, cfg.d_sae, cfg.k, cfg.seed, cfg.encoding).to(device)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.resolved_lr(), betas=cfg.adam_betas)
    since_fired_F = torch.zeros(cfg.d_sae, dtype=torch.int64, device=device)
    # Round-tripped through JSON so that it compares equal to a checkpoint's copy.
    settings = json.loads(json.dumps({"train": dataclasses.asdict(cfg), "d_in": d_in,
                                      "input_scale": input_scale}))
    # theta: running estimate of θ in scaled units; theta_batches: batches averaged into it.
    state = {"step": 0, "tokens_seen": 0, "log_rows": [], "theta": 0.0, "theta_batches": 0}
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    resumed = checkpoint_dir is not None and _load_checkpoint(
        checkpoint_dir, settings, sae, optimizer, since_fired_F, state)
    if not resumed:
        _init_b_dec(sae, init_sample, input_scale, cfg.b_dec_init)

    aux_k = cfg.resolved_aux_k(d_in)
    stop_at = cfg.total_steps if stop_after_steps is None else min(stop_after_steps, cfg.total_steps)
    batches = iter(batch_source(state["step"]))
    while state["step"] < stop_at:
        x_ND = _next_batch(batches, d_in, input_scale, device, state["step"])
        for group in optimizer.param_groups:
            group["lr"] = lr_at(state["step"], cfg)
        out = training_step(sae, optimizer, x_ND, since_fired_F >= cfg.dead_tokens, aux_k, cfg.aux_coeff,
                            cfg.max_grad_norm)
        since_fired_F.add_(x_ND.shape[0]).masked_fill_(out.fired_F, 0)
        if state["step"] >= min(cfg.warmup_steps(), cfg.total_steps - 1):  # a 1-step run averages its step
            _update_theta(state, float(out.min_kept), cfg.threshold_window_steps())
        state["step"] += 1
        state["tokens_seen"] += x_ND.shape[0]

        row = None
        if state["step"] % cfg.log_every == 0 or state["step"] == cfg.total_steps:
            row = _log_row(state, x_ND, out, since_fired_F >= cfg.dead_tokens, input_scale)
            state["log_rows"].append(row)
            log.info("step %(step)d: loss %(loss).4g fvu %(fvu).4g l0 %(l0).1f dead %(dead_fraction).3f "
                     "threshold %(threshold).4g", row)
        at_checkpoint = state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.total_steps
        if checkpoint_dir is not None and at_checkpoint:
            _save_checkpoint(checkpoint_dir, settings, sae, optimizer, since_fired_F, state)
        if progress is not None:
            progress(state["step"], cfg.total_steps, row)

    if cfg.encoding == "threshold" and state["step"] == cfg.total_steps:
        sae.threshold.fill_(state["theta"])
    sae.fold_input_scale_(input_scale)
    return sae.cpu(), state["log_rows"]


def _update_theta(state: dict, min_kept: float, window: int) -> None:
    """θ = the average over training batches of the smallest activation each batch kept
    (Bussmann et al. 2024, section 3): a plain mean of the batches since warm-up until there are
    `window` of them, then an exponential average over about the last `window` (as
    dictionary_learning's decay of 0.999 averages its last ~1000 batches). Early batches, whose
    minimum is far from the trained SAE's, thus drop out of short runs too."""
    state["theta_batches"] += 1
    state["theta"] += (min_kept - state["theta"]) / min(state["theta_batches"], window)


def _init_b_dec(sae: BatchTopKSAE, init_sample: np.ndarray, input_scale: float, how: str) -> None:
    """Start b_dec at the centre of the (scaled) data, so the encoder first sees centred inputs."""
    if init_sample.ndim != 2 or init_sample.shape[1] != sae.d_in or len(init_sample) == 0:
        raise SaeflowError(f"init_sample has shape {init_sample.shape}; "
                           f"it must be [n >= 1, d_in={sae.d_in}]")
    scaled_ND = init_sample.astype(np.float64) * input_scale
    centre_D = geometric_median(scaled_ND) if how == "geometric_median" else scaled_ND.mean(axis=0)
    with torch.no_grad():
        sae.b_dec.copy_(torch.from_numpy(centre_D.astype(np.float32)))


def _next_batch(batches: Iterator[np.ndarray], d_in: int, input_scale: float, device, step: int) -> torch.Tensor:
    batch = next(batches, None)
    if batch is None:
        raise SaeflowError(f"the activation batches ran out at step {step}: lower `total_tokens` "
                           "or capture more activations")
    if batch.ndim != 2 or batch.shape[1] != d_in:
        raise SaeflowError(f"activation batch {step} has shape {batch.shape}, expected [n, d_in={d_in}]")
    return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device) * input_scale


@torch.no_grad()
def _log_row(state: dict, x_ND: torch.Tensor, out: TrainingOutput, dead_F: torch.Tensor, input_scale: float) -> dict:
    """Measures of the training batch under batch top-k (not held-out; eval.json has those).
    Losses are in scaled units; fvu and l0 do not depend on the scale; threshold is the running θ
    in raw activation units."""
    total_variance = (x_ND - x_ND.mean(dim=0)).pow(2).sum()
    return {
        "step": state["step"],
        "tokens_seen": state["tokens_seen"],
        "loss": out.loss.item(),
        "mse": out.mse.item(),
        "aux_loss": out.aux_loss.item(),
        "fvu": ((x_ND - out.recon_ND).pow(2).sum() / total_variance).item(),
        "l0": out.l0.item(),
        "dead_fraction": dead_F.float().mean().item(),
        "threshold": state["theta"] / input_scale,
    }


# A checkpoint is checkpoint-<step>.safetensors (model, Adam state, dead counters) plus
# checkpoint.json (step, tokens, log rows, settings, and which tensors file belongs to it).
# The tensors file is written first and the JSON last, each atomically, so the JSON always
# points at a complete tensors file of the same step.
def _save_checkpoint(directory: Path, settings: dict, sae: BatchTopKSAE, optimizer: torch.optim.Adam,
                     since_fired_F: torch.Tensor, state: dict) -> None:
    tensors = {"since_fired": since_fired_F}
    for name, param in sae.named_parameters():
        tensors[f"sae.{name}"] = param
        for key, value in optimizer.state.get(param, {}).items():
            tensors[f"adam.{name}.{key}"] = value
    tensors_file = f"checkpoint-{state['step']:09d}.safetensors"
    arrays = {key: value.detach().cpu().numpy() for key, value in tensors.items()}
    storage.write_safetensors(directory / tensors_file, arrays, metadata={})
    storage.write_json(directory / CHECKPOINT_JSON, {**state, "settings": settings, "tensors": tensors_file})
    for old in directory.glob("checkpoint-*.safetensors"):
        if old.name != tensors_file:
            old.unlink()


def _load_checkpoint(directory: Path, settings: dict, sae: BatchTopKSAE, optimizer: torch.optim.Adam,
                     since_fired_F: torch.Tensor, state: dict) -> bool:
    """Restore a checkpoint with the same settings into the arguments; False if there is none."""
    if not (directory / CHECKPOINT_JSON).is_file():
        return False
    restart = f"delete {directory} to train from the start"
    meta = storage.read_json(directory / CHECKPOINT_JSON, keys=("settings", "tensors", *state), fix=restart)
    if meta["settings"] != settings:
        log.warning("ignoring the checkpoint in %s: it was made with other settings", directory)
        return False
    shapes = {f"sae.{name}": tuple(param.shape) for name, param in sae.named_parameters()}
    arrays = storage.read_safetensors(directory / str(meta["tensors"]),
                                      {**shapes, "since_fired": tuple(since_fired_F.shape)}, dtype=None, fix=restart)
    tensors = {key: torch.from_numpy(array) for key, array in arrays.items()}
    adam_state = {}
    with torch.no_grad():
        for index, (name, param) in enumerate(sae.named_parameters()):
            param.copy_(tensors[f"sae.{name}"])
            prefix = f"adam.{name}."
            entry = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
            if entry:
                adam_state[index] = entry
        since_fired_F.copy_(tensors["since_fired"])
    optimizer.load_state_dict({"state": adam_state, "param_groups": optimizer.state_dict()["param_groups"]})
    state.update({key: meta[key] for key in state})
    log.info("resuming from %s at step %d", directory, meta["step"])
    return True
