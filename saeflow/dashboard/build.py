"""results/dashboard.html: every SAE's artifacts packed into blobs inside one self-contained page.

The page holds a small JSON manifest (the run, metrics, curves: all the overview needs) and
base64 blobs it decodes only when needed:
- one corpus blob shared by every SAE: the string table and the text of all example windows,
  rebuilt from the corpus tables (see examples.py);
- per SAE an index blob: what the feature list needs for every feature (stats, labels and their
  TF-IDF tokens, units, thresholds, and the tokens each feature peaks on, for search);
- per SAE, chunks of CHUNK_FEATURES consecutive features with everything else (histograms,
  influences, neighbours, detection, label alignment, examples and their ablation, ablation
  logits): opening a feature decodes one chunk, not the whole SAE, which keeps the first feature
  fast however wide the SAE is;
- per SAE with steering experiments, one small blob of all their rows (see steering_rows.py), decoded
  by a feature page of that SAE and by the experiments view; the manifest lists the experiments;
- likewise per SAE with a concept ranking, one small blob of it (see concept_rows.py), for the
  concepts view and the feature page; the manifest summarises it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path

import jinja2
import numpy as np
import pyarrow as pa
from markupsafe import Markup

from saeflow.concept_items import LEVELS
from saeflow.dashboard import blob, feature_columns
from saeflow.dashboard.artifacts import Run, SaeArtifacts, has_column, parquet_rows
from saeflow.dashboard.concept_rows import concepts_blob
from saeflow.dashboard.examples import (ExampleCorpus, Placement, Windows, ablation_tables, example_tables,
                                        pack_example_corpus, peak_tokens, read_windows)
from saeflow.dashboard.overview import density_histogram, eval_metrics, training_curves
from saeflow.dashboard.steering_rows import steering_blob
from saeflow.dashboard.tables import ByFeature, Strings
from saeflow.errors import SaeflowError
from saeflow.storage import atomic_path

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
# Concatenated in this order into the page's one script.
SCRIPTS = ("data.js", "plots.js", "tokens.js", "browser.js", "feature.js", "steering.js", "experiments.js",
           "concepts.js", "overview.js", "app.js")
CHUNK_FEATURES = 1024


class _Blobs:
    """The page's blobs as base64 text under ids `blob-<n>`."""

    def __init__(self):
        self.texts: dict[str, str] = {}

    def add(self, payload, arrays: dict[str, np.ndarray]) -> str:
        key = f"blob-{len(self.texts)}"
        self.texts[key] = blob.to_text(blob.pack(payload, arrays))
        return key


def build_dashboard(out_path, run: Run, saes: list[SaeArtifacts], chunk_features: int = CHUNK_FEATURES) -> None:
    """Write the dashboard of `saes` for `run` (see artifacts.from_inputs).

    Of the corpus tables, only the example windows' rows and documents are read, and the
    footers. An SAE needs cfg.json and analysis/feature_stats.parquet; every other artifact is
    shown where it is given (see artifacts.py).
    """
    if not saes:
        raise SaeflowError("the dashboard needs at least one SAE (config.yaml `saes:`)")
    cfgs = [art.json("sae_cfg") for art in saes]
    windows = [_read_examples(art, int(cfg["d_sae"])) for art, cfg in zip(saes, cfgs)]

    log.info("placing the example windows of %d SAEs in the corpus", len(saes))
    present = [w for examples in windows for w in examples.values()]
    examples_corpus, placed = pack_example_corpus(present, run.tokens, run.documents) if present else (None, [])
    placements = iter(placed)
    strings = Strings(examples_corpus.strings if examples_corpus else pa.array([], pa.string()))
    blobs = _Blobs()
    entries = [_pack_sae(art, cfg, examples, {kind: next(placements) for kind in examples}, strings, blobs,
                         chunk_features) for art, cfg, examples in zip(saes, cfgs, windows)]
    manifest = {
        "run": _run_summary(run, cfgs),
        # Added last: packing the SAEs may have added vocabulary tokens to the string table.
        "corpus": blobs.add({"strings": strings.table.to_pylist(),
                             "wordpiece": bool(examples_corpus and examples_corpus.wordpiece)},
                            _corpus_arrays(examples_corpus)),
        "saes": entries,
    }
    html = render(manifest, blobs.texts)
    with atomic_path(out_path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    log.info("wrote %s (%.1f MB)", out_path, len(html) / 1e6)


def _pack_sae(art: SaeArtifacts, cfg: dict, examples: dict[str, Windows], where: dict[str, Placement],
              strings: Strings, blobs: _Blobs, chunk_features: int) -> dict:
    """One SAE's manifest entry, its index and chunk blobs added to `blobs`."""
    log.info("packing SAE %s", art.name)
    n = int(cfg["d_sae"])
    index_payload, index_arrays, chunked = _features(art, n, strings)
    for kind, w in examples.items():
        chunked += example_tables(kind, w, where[kind], n)
    if "top" in examples:
        index_arrays.update(peak_tokens(examples["top"], where["top"], n, strings).arrays())
    index_payload["ablated"] = None  # how many features were ablated, where the SAE has the ablation
    if (table := art.table("ablation")) is not None:
        if "top" not in examples:
            raise SaeflowError(f"SAE {art.name}: the ablation's examples are top examples; "
                               "the dashboard rule must give top_examples with ablation")
        chunked += ablation_tables(table, examples["top"], n, str(art.path("ablation")))
        index_payload["ablated"] = int(np.unique(table["feature"].to_numpy()).size)
    index_payload["bands"] = _bands(art, examples.get("q"))
    index_payload["chunk_features"] = chunk_features
    unit_map = art.json("unit_map")
    steering = None
    if files := art.tables("steering"):
        payload, experiments = steering_blob(files, n)
        steering = {"blob": blobs.add(payload, {}), "experiments": experiments}
    concepts = None
    if (table := art.table("concepts")) is not None:
        payload, arrays, summary = concepts_blob(table, n, str(art.path("concepts")))
        concepts = {"blob": blobs.add(payload, arrays), **summary}
    return {
        "name": art.name,
        "hook": cfg["hook"],
        "d_sae": n,
        "k": cfg.get("k"),
        "eval": eval_metrics(art.json("eval")),
        "n_kept": len(unit_map["kept_units"]) if unit_map else None,
        "training": training_curves(art.table("training_log")),
        "density": density_histogram(index_arrays["density"]),
        "index": blobs.add(index_payload, index_arrays),
        "chunks": [blobs.add({"first": lo}, _slice(chunked, lo, min(n, lo + chunk_features)))
                   for lo in range(0, n, chunk_features)],
        "steering": steering,
        "concepts": concepts,
    }


def _run_summary(run: Run, cfgs: list[dict]) -> dict:
    return {
        "model": run.model,
        "hooks": list(dict.fromkeys(cfg["hook"] for cfg in cfgs)),
        "documents": parquet_rows(run.documents),
        "tokens": parquet_rows(run.tokens),
        "labelled": has_column(run.documents, "labels"),
    }


def _corpus_arrays(corpus: ExampleCorpus | None) -> dict[str, np.ndarray]:
    if corpus is None:
        return {}
    return {"seg.seq": blob.smallest_uint(corpus.seq), "seg.start": blob.smallest_uint(corpus.start),
            "seg.ptr": blob.smallest_uint(corpus.ptr), "tokens": blob.smallest_uint(corpus.tokens),
            "special": corpus.special.astype(np.uint8)}


def _read_examples(art: SaeArtifacts, n_features: int) -> dict[str, Windows]:
    """{"top": ..., "q": ...}, each only where it is given."""
    out = {}
    for kind, name in (("top", "top_examples"), ("q", "quantile_examples")):
        if (table := art.table(name)) is not None:
            out[kind] = read_windows(table, art.path(name), n_features)
    return out


def _bands(art: SaeArtifacts, quantile: Windows | None) -> int:
    """How many quantile bands the analysis used (params.json, else the highest band seen)."""
    params = art.json("analysis_params") or {}
    if "quantile_bands" in params:
        return int(params["quantile_bands"])
    return int(quantile.band.max()) + 1 if quantile is not None and quantile.band.size else 0


def _features(art: SaeArtifacts, n: int, strings: Strings) -> tuple[dict, dict, list[ByFeature]]:
    """The index blob's payload and arrays, and the tables that go into the chunks."""
    stats = art.table("feature_stats")
    index = feature_columns.stats_arrays(stats, n, str(art.path("feature_stats")))
    payload: dict = {"thresholds": [], "labels": None, "llm_labels": None, "llm_models": [], "detection_labels": None,
                     "detection_levels": None, "alignment_labels": None}
    chunked: list[ByFeature] = []
    if (unit_map := art.json("unit_map")) is not None:
        units, payload["thresholds"] = feature_columns.unit_arrays(
            unit_map, art.table("thresholds"), n, str(art.path("thresholds")))
        index.update(units)
    if (table := art.table("labels")) is not None:
        payload["labels"] = feature_columns.label_list(table, n, str(art.path("labels")))
        if (scored := feature_columns.label_token_columns(table, n, str(art.path("labels")), strings)) is not None:
            index.update(scored.arrays())
    if (table := art.table("llm_labels")) is not None:
        payload["llm_labels"], payload["llm_models"] = feature_columns.llm_label_list(
            table, n, str(art.path("llm_labels")))
    if (table := art.table("histograms")) is not None:
        chunked += feature_columns.histogram_columns(table, n, str(art.path("histograms")))
    if (table := art.table("influences")) is not None:
        chunked.append(feature_columns.influence_columns(table, n, str(art.path("influences")), strings))
    if (table := art.table("neighbours")) is not None:
        chunked.append(feature_columns.neighbour_columns(table, n, str(art.path("neighbours"))))
    if (table := art.table("detection")) is not None:
        det, payload["detection_labels"] = feature_columns.detection_columns(table, n, str(art.path("detection")))
        payload["detection_levels"] = list(LEVELS)
        chunked.append(det)
    if (table := art.table("label_alignment")) is not None:
        aligned, payload["alignment_labels"] = feature_columns.alignment_columns(
            table, n, str(art.path("label_alignment")))
        chunked.append(aligned)
    if (table := art.table("ablation_logits")) is not None:
        chunked.append(feature_columns.ablation_logit_columns(table, n, str(art.path("ablation_logits")), strings))
    return payload, index, chunked


def _slice(tables: list[ByFeature], first: int, stop: int) -> dict[str, np.ndarray]:
    arrays = {}
    for table in tables:
        arrays.update(table.arrays(first, stop))
    return arrays


def render(manifest: dict, blobs: dict[str, str]) -> str:
    """The page: template, styles and scripts inline, under a CSP that allows nothing else."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    script = "\n".join((HERE / "assets" / name).read_text(encoding="utf-8") for name in SCRIPTS)
    style = (HERE / "assets" / "dashboard.css").read_text(encoding="utf-8")
    for text in (script, style):
        if "</" in text:  # would end the inline element early
            raise ValueError("inline assets must not contain '</'")
    return env.get_template("dashboard.html.j2").render(
        manifest=manifest, blobs=blobs, script=Markup(script), style=Markup(style),
        script_hash=_csp_hash(script), style_hash=_csp_hash(style),
    )


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
