"""Hostile text (issue 14) in every place the dashboard shows data text, for one browser test.

A small synthetic run whose strings are all payloads: markup that would run if the page ever
inserted text as HTML (each sets window.pwned or opens a dialog), attribute breakers, a
javascript: URL, an HTML entity, right-to-left override, zero-width characters and a
10,000-character token. They stand as:

- corpus tokens and so document text: FEATURE's strongest example holds every payload, one token
  each (the strip; ablated, so each token also carries them in its data- attributes);
- vocabulary tokens: FEATURE's promoted influences (chips);
- labels: feature i's TF-IDF and LLM label is payload i (the list, the feature page, the
  experiments view);
- corpus labels: detection, label alignment, the concept ranking, a steering vector's name;
- steering: every prompt and steered text of the experiment on FEATURE;
- the model's name (the top bar).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from saeflow.dashboard import build_dashboard

from .synthetic import CorpusSpec, Experiment, SaeSpec, SyntheticCorpus, SyntheticSae, write_run

LONG = "0123456789" * 1_000
RTL = "abc\u202edef ghi"  # U+202E RIGHT-TO-LEFT OVERRIDE with no U+202C to end it
PAYLOADS = (
    '" onmouseover="window.pwned=1" autofocus onfocus="window.pwned=1" x="',
    "' onfocus='window.pwned=2' autofocus='",
    "javascript:window.pwned=3//",
    '<img src=x onerror="window.pwned=4;alert(4)">',
    "</script><script>window.pwned=5;alert(5)</script>",
    '<iframe src="javascript:window.pwned=6"></iframe>',
    "<svg onload=window.pwned=7><a href=javascript:alert(7)>x</a></svg>",
    "&lt;b&gt; &amp; &#60;img src=x onerror=alert(8)&#62;",
    RTL,
    "zero\u200bwidth\u200djoiner\ufeffbom",
    LONG,
)
FEATURE = 0  # holds every payload in its example, influences and steering
SAE = "p"
MODEL = PAYLOADS[3]
VECTOR = PAYLOADS[4]  # a corpus label, steered towards
SEQ_LEN = 24
PEAK = 12  # the example's max; its window (context 6) holds positions 6..18


def _place_in_example(sae: SyntheticSae, corpus: SyntheticCorpus) -> None:
    """FEATURE's strongest example peaks at PEAK, its window holding every payload, one token each
    with nothing between them, so each token's piece is exactly its payload."""
    first = list(sae.top["feature"]).index(FEATURE)
    sae.top["pos"][first] = PEAK
    seq = sae.top["seq"][first]
    for i, payload in enumerate(PAYLOADS):
        pos = PEAK - len(PAYLOADS) // 2 + i
        corpus.ids[seq, pos] = corpus.vocab.index(payload)
        corpus.gaps[seq, pos] = 0  # GAPS[0]: no text before the token


def _promote_payloads(influences: Path) -> None:
    """FEATURE's promoted tokens ("+", by rank) become the payloads."""
    table = pq.read_table(influences)
    mine = pc.and_(pc.equal(table["feature"], FEATURE), pc.equal(table["sign"], "+")).to_numpy(zero_copy_only=False)
    tokens = table["token"].to_pylist()
    ranks = table["rank"].to_pylist()
    for i in mine.nonzero()[0]:
        tokens[i] = PAYLOADS[ranks[i]]
    pq.write_table(table.set_column(table.column_names.index("token"), "token", pa.array(tokens)), influences)


def build_payload_run(root: Path) -> Path:
    """The run's dashboard.html."""
    n = len(PAYLOADS)
    corpus = SyntheticCorpus(CorpusSpec(n_seqs=32, seq_len=SEQ_LEN, vocab_size=60, extra_tokens=list(PAYLOADS),
                                        doc_labels=PAYLOADS, seed=3))
    labels = dict(enumerate(PAYLOADS))
    steering = (Experiment("hostile", features=(FEATURE,), prompts=PAYLOADS, alphas=(1.0,),
                           texts={(FEATURE, p, 1.0): payload for p, payload in enumerate(PAYLOADS)}),
                Experiment("towards", vector=VECTOR, prompts=(RTL,), alphas=(1.0,)))
    sae = SyntheticSae(SaeSpec(SAE, n + 3, seed=4, influence_k=n, fixed_labels=labels, fixed_llm_labels=labels,
                               llm_labels=True, steering=steering, ablated=1, ablation_examples=1,
                               label_alignment=True, concepts_top_n=1), corpus)
    _place_in_example(sae, corpus)
    run, (artifacts,) = write_run(root, corpus, [sae], model=MODEL)
    _promote_payloads(artifacts.path("influences"))
    html = root / "dashboard.html"
    build_dashboard(html, run, [artifacts], chunk_features=16)
    return html
