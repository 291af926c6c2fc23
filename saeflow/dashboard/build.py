"""results/dashboard.html: every SAE's artifacts packed into blobs and one self-contained page.

The page holds a small JSON manifest (run, metrics, curves: all the overview needs) and base64
blobs that it decodes only when a SAE is opened: one corpus blob shared by every SAE (the text
of all example windows, see examples.py), and per SAE a features blob (stats, histograms,
units, influences, neighbours, labels, detection) and an examples blob (window references and
activations).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup

from saeflow.dashboard import blob, features
from saeflow.dashboard.artifacts import SaeArtifacts, has_column, parquet_rows
from saeflow.dashboard.examples import Placement, Windows, build_corpus, read_windows, tfidf
from saeflow.dashboard.overview import density_histogram, eval_metrics, training_curves
from saeflow.errors import SaeflowError
from saeflow.storage import atomic_path

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
# Concatenated in this order into the page's one script.
SCRIPTS = ("data.js", "plots.js", "tokens.js", "browser.js", "feature.js", "overview.js", "app.js")
TFIDF_TOKENS = 5


class _Blobs:
    """Collects the page's blobs as base64 text under ids `blob-<n>`."""

    def __init__(self):
        self.texts: dict[str, str] = {}

    def add(self, payload, arrays: dict[str, np.ndarray]) -> str:
        key = f"blob-{len(self.texts)}"
        self.texts[key] = blob.to_text(blob.pack(payload, arrays))
        return key


def build_dashboard(out_path, run: dict, saes: list[dict]) -> None:
    """Write the dashboard of `saes` (dicts with "name", "dir") for `run` (see module docs).

    run: "model" (its path or name), "corpus_documents" and "corpus_tokens" (Parquet paths) and
    optionally "corpus_idf", without which feature pages show no TF-IDF tokens.
    """
    if not saes:
        raise SaeflowError("the dashboard needs at least one SAE (config.yaml `saes:`)")
    arts = [SaeArtifacts(s["name"], s["dir"]) for s in saes]
    cfgs = [art.json("cfg", required=True) for art in arts]
    windows = [_read_examples(art, int(cfg["d_sae"])) for art, cfg in zip(arts, cfgs)]

    log.info("packing example windows of %d SAEs", len(arts))
    present = [w for pair in windows for w in pair if w is not None]
    corpus, placed = build_corpus(present) if present else (None, [])
    placements = iter(placed)
    blobs = _Blobs()
    corpus_id = blobs.add({"strings": corpus.strings.to_pylist() if corpus else []}, _corpus_arrays(corpus))

    entries = []
    for art, cfg, (top, quantile) in zip(arts, cfgs, windows):
        log.info("packing SAE %s", art.name)
        top_at = next(placements) if top is not None else None
        quantile_at = next(placements) if quantile is not None else None
        n = int(cfg["d_sae"])
        tfidf_rows = None
        if top is not None and run.get("corpus_idf"):
            tfidf_rows = tfidf(top, top_at, corpus.strings, run["corpus_idf"], TFIDF_TOKENS)
        feature_payload, feature_arrays, density = _features(art, n, tfidf_rows)
        example_arrays = {**_example_arrays("top", top, top_at, n), **_example_arrays("q", quantile, quantile_at, n)}
        params = art.json("params") or {}
        bands = params.get("quantile_bands") or (int(quantile.band.max()) + 1 if quantile is not None and quantile.band.size else 0)
        unit_map = art.json("unit_map")
        entries.append({
            "name": art.name,
            "layer": cfg.get("layer"),
            "d_sae": n,
            "k": cfg.get("k"),
            "eval": eval_metrics(art.json("eval")),
            "n_kept": len(unit_map["kept_units"]) if unit_map else None,
            "criteria": unit_map.get("criteria") if unit_map else None,
            "training": training_curves(art.table("training_log")),
            "density": density_histogram(density),
            "features": blobs.add(feature_payload, feature_arrays),
            "examples": blobs.add({"bands": bands}, example_arrays),
        })

    manifest = {
        "run": {
            "model": run["model"],
            "layers": sorted({cfg["layer"] for cfg in cfgs if "layer" in cfg}),
            "documents": parquet_rows(run["corpus_documents"]),
            "tokens": parquet_rows(run["corpus_tokens"]),
            "labelled": has_column(run["corpus_documents"], "labels"),
        },
        "corpus": corpus_id,
        "saes": entries,
    }
    html = render(manifest, blobs.texts)
    with atomic_path(out_path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    log.info("wrote %s (%.1f MB)", out_path, len(html) / 1e6)


def _read_examples(art: SaeArtifacts, n_features: int) -> tuple[Windows | None, Windows | None]:
    out = []
    for name in ("top_examples", "quantile_examples"):
        table = art.table(name)
        out.append(read_windows(table, art.path(name), n_features) if table is not None else None)
    return tuple(out)


def _corpus_arrays(corpus) -> dict[str, np.ndarray]:
    if corpus is None:
        return {}
    return {
        "seg.seq": blob.smallest_uint(corpus.seq),
        "seg.start": blob.smallest_uint(corpus.start),
        "seg.ptr": blob.smallest_uint(corpus.ptr),
        "tokens": blob.smallest_uint(corpus.tokens),
    }


def _example_arrays(prefix: str, w: Windows | None, at: Placement | None, n_features: int) -> dict[str, np.ndarray]:
    if w is None:
        return {}
    arrays = {
        f"{prefix}.ptr": features.feature_ptr(w.feature, n_features, prefix),
        f"{prefix}.segment": blob.smallest_uint(at.segment),
        f"{prefix}.offset": blob.smallest_uint(at.offset),
        f"{prefix}.length": blob.smallest_uint(w.length),
        f"{prefix}.max_index": blob.smallest_uint(w.max_index),
        f"{prefix}.acts": blob.compact_floats(w.acts),
    }
    if w.band is not None:
        arrays[f"{prefix}.band"] = blob.smallest_uint(w.band)
    return arrays


def _features(art: SaeArtifacts, n: int, tfidf_rows) -> tuple[dict, dict, np.ndarray]:
    """The features blob's payload and arrays, and the density of every feature."""
    stats = art.table("feature_stats", required=True)
    arrays = features.stats_arrays(stats, n, str(art.path("feature_stats")))
    payload: dict = {"thresholds": [], "labels": None, "influence_tokens": None, "detection_labels": None}

    if (hist := art.table("histograms")) is not None:
        arrays.update(features.histogram_arrays(hist, n, str(art.path("histograms"))))
    if (unit_map := art.json("unit_map")) is not None:
        unit, payload["thresholds"] = features.unit_arrays(unit_map, art.table("thresholds"), n, str(art.path("thresholds")))
        arrays.update(unit)
    if (table := art.table("influences")) is not None:
        inf, payload["influence_tokens"] = features.influence_arrays(table, n, str(art.path("influences")))
        arrays.update(inf)
    if (table := art.table("neighbours")) is not None:
        arrays.update(features.neighbour_arrays(table, n, str(art.path("neighbours"))))
    if (table := art.table("detection")) is not None:
        det, payload["detection_labels"] = features.detection_arrays(table, n, str(art.path("detection")))
        arrays.update(det)
    if (table := art.table("labels")) is not None:
        payload["labels"] = features.label_list(table, n, str(art.path("labels")))
    if tfidf_rows is not None:
        arrays["tfidf.ptr"] = features.feature_ptr(tfidf_rows.feature, n, "TF-IDF tokens")
        arrays["tfidf.token"] = blob.smallest_uint(tfidf_rows.token_id)
        arrays["tfidf.score"] = tfidf_rows.score.astype(np.float32)
    return payload, arrays, arrays["density"]


def render(manifest: dict, blobs: dict[str, str]) -> str:
    """The page: template, styles and scripts inline, a CSP that allows nothing but them."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    script = "\n".join((HERE / "assets" / name).read_text(encoding="utf-8") for name in SCRIPTS)
    style = (HERE / "assets" / "dashboard.css").read_text(encoding="utf-8")
    for text in (script, style):
        if "</" in text:  # would end the inline element early
            raise ValueError("inline assets must not contain '</'")
    return env.get_template("dashboard.html.j2").render(
        manifest=manifest,
        blobs=blobs,
        script=Markup(script),
        style=Markup(style),
        script_hash=_csp_hash(script),
        style_hash=_csp_hash(style),
    )


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
