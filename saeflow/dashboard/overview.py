"""The overview's data, small enough to live as plain JSON: the run, each SAE's metrics and curves."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from saeflow.dashboard.artifacts import finite_or_none

CURVES = ("loss", "fvu", "l0", "dead_fraction")
# A plot has a few hundred pixels across; more points only make the file bigger.
MAX_CURVE_POINTS = 1000
DENSITY_BIN = 0.2  # width of a log10-density bin


def training_curves(log: pa.Table | None) -> dict | None:
    """tokens_seen and the CURVES columns the log has, thinned to MAX_CURVE_POINTS (last row kept)."""
    if log is None or log.num_rows == 0:
        return None
    keep = np.unique(np.append(np.arange(0, log.num_rows, -(-log.num_rows // MAX_CURVE_POINTS)), log.num_rows - 1))
    log = log.take(pa.array(keep))
    return {c: [finite_or_none(v) for v in log[c].to_pylist()]
            for c in ("tokens_seen", *CURVES) if c in log.column_names}


def density_histogram(density: np.ndarray) -> dict:
    """Histogram of log10 density over features that fire; dead features are counted apart."""
    alive = density[np.isfinite(density) & (density > 0)]
    if not alive.size:
        return {"edges": [], "counts": [], "dead": int(density.size)}
    logs = np.log10(alive)
    low = np.floor(logs.min() / DENSITY_BIN) * DENSITY_BIN
    high = max(np.ceil(logs.max() / DENSITY_BIN) * DENSITY_BIN, low + DENSITY_BIN)
    edges = np.linspace(low, high, int(round((high - low) / DENSITY_BIN)) + 1)
    counts, _ = np.histogram(logs, bins=edges)
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist(),
            "dead": int(density.size - alive.size)}


def eval_metrics(evaluation: dict | None) -> dict:
    return {key: finite_or_none(value) for key, value in (evaluation or {}).items()}
