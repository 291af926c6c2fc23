"""A built dashboard over a small synthetic run of two SAEs (see synthetic.py), shared by the tests.

SAE "a" has a dead feature, a feature found by a unique label, and one whose strongest example
holds markup tokens that would run if the page ever inserted corpus text as HTML; SAE "b" has
labels without the labeler's scored tokens (the contract's minimum).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from saeflow.dashboard import build_dashboard

from .synthetic import CorpusSpec, SaeSpec, SyntheticCorpus, SyntheticSae, write_run

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "<script>alert(2)</script>"
XSS_LABEL = "<img src=z onerror=alert(3)>"
DEAD, NEEDLE, XSS_FEATURE, XSS_LABEL_FEATURE = 3, 7, 5, 9
NEEDLE_LABEL = "needle in a haystack"


@dataclass
class Built:
    html: Path
    run: dict  # build_dashboard's arguments
    saes: list[dict]


def build_run(root: Path, optional: bool = True) -> Built:
    corpus = SyntheticCorpus(CorpusSpec(extra_tokens=[XSS_IMG, XSS_SCRIPT], doc_labels=("python", "<b>bold</b>", "x")))
    a = SyntheticSae(SaeSpec("a", 48, layer=3, dead=(DEAD,), seed=1,
                             fixed_labels={NEEDLE: NEEDLE_LABEL, XSS_LABEL_FEATURE: XSS_LABEL}), corpus)
    b = SyntheticSae(SaeSpec("b", 32, layer=5, causal_lm=False, scored_labels=False, seed=2), corpus)
    # Put the markup tokens at the max of feature XSS_FEATURE's strongest example.
    first = list(a.top["feature"]).index(XSS_FEATURE)
    seq, pos = a.top["seq"][first], a.top["pos"][first]
    corpus.ids[seq, pos] = corpus.vocab.index(XSS_IMG)
    corpus.ids[seq, pos + 1 if pos + 1 < corpus.spec.seq_len else pos - 1] = corpus.vocab.index(XSS_SCRIPT)
    run, saes = write_run(root, corpus, [a, b] if optional else [a])
    if not optional:
        sae_dir = Path(saes[0]["dir"])
        for name in ("eval.json", "training_log.parquet", "units/unit_map.json", "units/thresholds.parquet",
                     "analysis/params.json", "analysis/quantile_examples.parquet", "analysis/histograms.parquet",
                     "analysis/influences.parquet", "analysis/neighbours.parquet", "analysis/labels.parquet",
                     "analysis/detection.parquet"):
            (sae_dir / name).unlink()
    html = root / "dashboard.html"
    build_dashboard(html, run, saes, chunk_features=16)
    return Built(html, run, saes)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    return build_run(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture(scope="session")
def built_minimal(tmp_path_factory) -> Built:
    """One SAE with only the required files: cfg.json, feature_stats and top_examples."""
    return build_run(tmp_path_factory.mktemp("dashboard-minimal"), optional=False)
