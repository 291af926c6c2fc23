"""Training curves of an SAE as one standalone SVG (for Snakemake's --report; no plotting library).

One panel per training-log column (loss, FVU, L0, dead fraction) against tokens seen: each a
polyline scaled into its own box, with the column's first and last values and its range written
beside it, so the figure reads without axes software.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import numpy as np

from saeflow import storage

PANELS = (("loss", "loss"), ("fvu", "FVU"), ("l0", "L0"), ("dead_fraction", "dead fraction"))
WIDTH, PANEL_HEIGHT, MARGIN = 640, 150, 48


def panel_points(x: np.ndarray, y: np.ndarray, top: float) -> list[tuple[float, float]]:
    """(x, y) pixel points of one panel: x over [MARGIN, WIDTH − MARGIN], y over the panel's box
    (top + 20 .. top + PANEL_HEIGHT − 10), larger values higher; a flat series sits mid-box."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x_span = x.max() - x.min()
    y_span = y.max() - y.min()
    px = MARGIN + (x - x.min()) / (x_span if x_span else 1) * (WIDTH - 2 * MARGIN)
    box_top, box_bottom = top + 20, top + PANEL_HEIGHT - 10
    fraction = (y - y.min()) / y_span if y_span else np.full(y.shape, 0.5)
    py = box_bottom - fraction * (box_bottom - box_top)
    return list(zip(px.round(2).tolist(), py.round(2).tolist()))


def training_curves_svg(log: dict[str, np.ndarray], title: str) -> str:
    x = log["tokens_seen"]
    present = [(column, name) for column, name in PANELS if column in log and np.isfinite(log[column]).any()]
    height = 30 + PANEL_HEIGHT * len(present)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><text x="{MARGIN}" y="18" font-size="14">{escape(title)}</text>']
    for i, (column, name) in enumerate(present):
        top = 30 + i * PANEL_HEIGHT
        finite = np.isfinite(log[column])
        y = log[column][finite]
        points = " ".join(f"{px},{py}" for px, py in panel_points(x[finite], y, top))
        parts.append(f'<text x="{MARGIN}" y="{top + 14}">{escape(name)}: {y[0]:.4g} → {y[-1]:.4g} '
                     f'(range {y.min():.4g}–{y.max():.4g}) over {int(x[finite][-1]):,} tokens</text>'
                     f'<rect x="{MARGIN}" y="{top + 20}" width="{WIDTH - 2 * MARGIN}" height="{PANEL_HEIGHT - 30}" '
                     f'fill="none" stroke="#ccc"/>'
                     f'<polyline data-column="{column}" points="{points}" fill="none" stroke="#2563eb" stroke-width="1.5"/>')
    if not present:  # a pretrained SAE: nothing was trained here
        parts.append(f'<text x="{MARGIN}" y="50">no training steps logged (imported, not trained)</text>')
    return "".join(parts) + "</svg>\n"


def training_curves_job(log_path, out_path, title: str) -> None:
    table = storage.read_parquet_table(log_path)
    log = {name: table[name].to_numpy(zero_copy_only=False).astype(np.float64) for name in table.column_names}
    if "tokens_seen" not in log or not len(log["tokens_seen"]):
        log = {"tokens_seen": np.zeros(0)}
    with storage.atomic_path(out_path) as tmp:
        tmp.write_text(training_curves_svg(log, title))
