"""The report's training-curve SVG: every logged value drawn where a linear scaling puts it."""

import xml.etree.ElementTree as ET

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from saeflow.training_curves import MARGIN, PANEL_HEIGHT, WIDTH, training_curves_job

SVG = "{http://www.w3.org/2000/svg}"


def test_each_curve_is_its_column_scaled_into_its_panel(tmp_path):
    tokens = np.arange(1, 9) * 1024.0
    log = {"step": np.arange(8), "tokens_seen": tokens, "loss": np.linspace(2, 0.5, 8) ** 2,
           "fvu": np.array([0.9, 0.5, 0.4, 0.35, 0.3, 0.3, 0.29, 0.28]), "l0": np.full(8, 32.0),
           "dead_fraction": np.array([0, 0, 0.1, np.nan, 0, 0, 0, 0])}
    pq.write_table(pa.table(log), tmp_path / "log.parquet")
    training_curves_job(tmp_path / "log.parquet", tmp_path / "c.svg", "SAE <x>")
    root = ET.parse(tmp_path / "c.svg").getroot()
    assert root.find(f"{SVG}text").text == "SAE <x>"
    lines = root.findall(f"{SVG}polyline")
    assert [line.get("data-column") for line in lines] == ["loss", "fvu", "l0", "dead_fraction"]
    for panel, line in enumerate(lines):
        column = line.get("data-column")
        keep = np.isfinite(log[column])
        y = log[column][keep]
        points = np.array([p.split(",") for p in line.get("points").split()], dtype=float)
        top, bottom = 30 + panel * PANEL_HEIGHT + 20, 30 + (panel + 1) * PANEL_HEIGHT - 10
        span = y.max() - y.min()
        expected_y = bottom - ((y - y.min()) / span if span else np.full(y.shape, 0.5)) * (bottom - top)
        expected_x = MARGIN + (tokens[keep] - tokens.min()) / np.ptp(tokens) * (WIDTH - 2 * MARGIN)
        np.testing.assert_allclose(points, np.stack([expected_x, expected_y], axis=1), atol=0.01)


def test_an_empty_log_says_nothing_was_trained(tmp_path):
    pq.write_table(pa.table({"step": pa.array([], pa.int64()), "tokens_seen": pa.array([], pa.int64())}),
                   tmp_path / "log.parquet")
    training_curves_job(tmp_path / "log.parquet", tmp_path / "c.svg", "pretrained")
    assert "imported, not trained" in (tmp_path / "c.svg").read_text()
