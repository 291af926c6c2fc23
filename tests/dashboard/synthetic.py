"""Synthetic runs that follow the artifact contract, for the dashboard tests and its benchmark.

A corpus of random Zipf-distributed tokens, each sequence opened by a special token, written
into document texts with random gaps between tokens (none, spaces, line breaks) and their spans;
and per SAE every file the dashboard reads: cfg, eval, training log, units and all analysis
tables (concept detection on both splits, see synthetic_concepts.py), and where the spec asks,
steering experiments, ablation, LLM labels and label alignment (issue 11's tables) and the
concept ranking. Examples are real windows of the corpus
(pos − context .. pos + context, clipped), their max at pos, so the packing's inference of
window starts is exercised exactly as on pipeline output. Everything is vectorised: the
benchmark builds 24,576 features × 45 examples with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from saeflow.dashboard.artifacts import Run, SaeArtifacts

from .synthetic_concepts import concepts_table, detection_table

D_IN = 64  # the hook's width: the dense baseline's dimensions
SEQ_STRIDE = 7919  # a prime: seq = (first + rank * stride) % n_seqs gives distinct sequences


@dataclass
class CorpusSpec:
    n_seqs: int = 64
    seq_len: int = 24
    seqs_per_doc: int = 4
    extra_tokens: list[str] = field(default_factory=list)  # the rarest entries of the vocabulary
    vocab_size: int = 400
    doc_labels: tuple[str, ...] = ("python", "math", "prose")
    special: str = "[CLS]"  # the token at position 0 of every sequence
    seed: int = 0


# What the text holds between two tokens, and how often: pieces of one word, spaces, line breaks.
GAPS = ("", " ", "  ", "\n", "\n\n", "\t")
GAP_WEIGHTS = (0.2, 0.6, 0.05, 0.07, 0.05, 0.03)


@dataclass
class SaeSpec:
    name: str
    n_features: int
    layer: int = 3
    k: int = 8
    dead: tuple[int, ...] = ()
    top_k: int = 20
    bands: int = 5
    per_band: int = 5
    context: int = 6
    bins: int = 20
    percentiles: tuple[float, ...] = (50, 90, 99, 99.5)
    influence_k: int = 5
    neighbours: int = 5
    max_density: float = 0.1  # units above it are pruned
    causal_lm: bool = True  # eval.json with the ce_* keys
    fixed_labels: dict[int, str] = field(default_factory=dict)  # labels to use instead of random ones
    scored_labels: bool = True  # labels.parquet with the labeler's `tokens` and `scores` columns
    seed: int = 0
    # Issue 11's tables, all off by default (the benchmark measures the tables above).
    steering: tuple["Experiment", ...] = ()
    ablated: int = 0  # ablate the first N features with top examples, their first `ablation_examples`
    ablation_examples: int = 3
    ablation_logits: int = 4  # tokens per sign
    llm_labels: bool = False  # every third feature with examples unlabelled, one failed request
    fixed_llm_labels: dict[int, str] = field(default_factory=dict)
    label_alignment: bool = False  # a row per (feature, corpus label)
    # Concept detection on these levels; concepts.parquet with this many rows per (label, level,
    # source, criterion), none where 0.
    detection_levels: tuple[str, ...] = ("document", "token")
    concepts_top_n: int = 0


@dataclass
class Experiment:
    """One steering experiment: its rows are every (target, prompt, alpha)."""

    name: str
    features: tuple[int, ...] = ()  # or a vector:
    vector: str | None = None
    mode: str = "add"
    prompts: tuple[str, ...] = ("The cat sat on", "In 1999, the")
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    ce_margin: float = 1.0
    texts: dict[tuple, str] = field(default_factory=dict)  # (target, prompt index, alpha) -> steered text


class SyntheticCorpus:
    def __init__(self, spec: CorpusSpec):
        self.spec = spec
        rng = np.random.default_rng(spec.seed)
        words = [f"w{i}" for i in range(spec.vocab_size - len(spec.extra_tokens))]
        self.vocab = words + list(spec.extra_tokens)
        # Zipf-like frequencies, so the string table looks like that of text.
        weights = 1.0 / np.arange(1, len(self.vocab) + 1) ** 1.1
        self.ids = rng.choice(len(self.vocab), size=(spec.n_seqs, spec.seq_len), p=weights / weights.sum())
        self.ids = self.ids.astype(np.int32)
        self.vocab.append(spec.special)
        self.ids[:, 0] = len(self.vocab) - 1
        self.gaps = rng.choice(len(GAPS), size=self.ids.shape, p=GAP_WEIGHTS)  # the text before each token
        self.n_docs = -(-spec.n_seqs // spec.seqs_per_doc)
        self.doc_labels = [sorted({spec.doc_labels[j] for j in rng.choice(len(spec.doc_labels), 2)})
                           for _ in range(self.n_docs)]

    @property
    def n_tokens(self) -> int:
        return self.ids.size

    def piece(self, seq: int, pos: int, first: bool) -> str:
        """What token (seq, pos) shows as the first token of a window or after another: its
        string, with the gap before it unless it opens the window or follows the special token."""
        token = self.vocab[self.ids[seq, pos]]
        return token if first or pos <= 1 else GAPS[self.gaps[seq, pos]] + token

    def write(self, root: Path) -> dict:
        spec, out = self.spec, root / "corpus"
        out.mkdir(parents=True, exist_ok=True)
        doc_of_seq = np.arange(spec.n_seqs) // spec.seqs_per_doc
        n_tokens = np.bincount(doc_of_seq, minlength=self.n_docs) * spec.seq_len
        texts, start, end = self._texts(doc_of_seq)
        pq.write_table(pa.table({
            "doc": pa.array(np.arange(self.n_docs), pa.int32()),
            "source": [f"synthetic/doc-{d}.txt" for d in range(self.n_docs)],
            "n_tokens": pa.array(n_tokens, pa.int32()),
            "labels": pa.array(self.doc_labels, pa.list_(pa.string())),
            "text": texts,
        }), out / "documents.parquet")
        self._write_tokens(out / "tokens.parquet", doc_of_seq, start, end)
        return {"tokens": str(out / "tokens.parquet"), "documents": str(out / "documents.parquet")}

    def _texts(self, doc_of_seq: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Each document's text (its content tokens, each after its gap) and every token's span."""
        content = np.ones(self.ids.shape, dtype=bool)
        content[:, 0] = False
        token_len = np.array([len(t) for t in self.vocab])[self.ids]
        gap_len = np.array([len(g) for g in GAPS])[self.gaps]
        step = np.where(content, gap_len + token_len, 0).ravel()
        reach = np.cumsum(step)
        doc_first = np.searchsorted(np.repeat(doc_of_seq, self.spec.seq_len), np.arange(self.n_docs))
        end = reach - np.repeat(np.append(0, reach)[doc_first], np.diff(np.append(doc_first, reach.size)))
        start = end - token_len.ravel()
        start, end = (np.where(content.ravel(), x, -1) for x in (start, end))
        pieces = np.where(content, np.char.add(np.array(GAPS, dtype=object)[self.gaps],
                                               np.array(self.vocab, dtype=object)[self.ids]), "").ravel()
        texts = ["".join(pieces[a:b]) for a, b in zip(doc_first, np.append(doc_first[1:], pieces.size))]
        return texts, start, end

    def _write_tokens(self, path: Path, doc_of_seq: np.ndarray, start: np.ndarray, end: np.ndarray,
                      seqs_per_batch: int = 20000) -> None:
        vocab = pa.array(self.vocab)
        schema = pa.schema([("seq", pa.int32()), ("pos", pa.int32()), ("doc", pa.int32()), ("token_id", pa.int32()),
                            ("token", pa.string()), ("special", pa.bool_()), ("start", pa.int32()),
                            ("end", pa.int32())])
        L = self.spec.seq_len
        with pq.ParquetWriter(path, schema) as writer:
            for s0 in range(0, self.spec.n_seqs, seqs_per_batch):
                ids = self.ids[s0 : s0 + seqs_per_batch]
                seq = np.repeat(np.arange(s0, s0 + ids.shape[0]), L)
                pos = np.tile(np.arange(L), ids.shape[0])
                rows = slice(s0 * L, s0 * L + ids.size)
                writer.write_table(pa.table({
                    "seq": pa.array(seq, pa.int32()), "pos": pa.array(pos, pa.int32()),
                    "doc": pa.array(doc_of_seq[seq], pa.int32()), "token_id": pa.array(ids.ravel(), pa.int32()),
                    "token": vocab.take(pa.array(ids.ravel())), "special": pa.array(pos == 0),
                    "start": pa.array(start[rows], pa.int32()), "end": pa.array(end[rows], pa.int32()),
                }, schema=schema))


def _distinct_seqs(rng, n_rows: int, rank: np.ndarray, n_seqs: int) -> np.ndarray:
    stride = SEQ_STRIDE if gcd(SEQ_STRIDE, n_seqs) == 1 else 1
    return (rng.integers(0, n_seqs, n_rows) + rank * stride) % n_seqs


class SyntheticSae:
    """One SAE's tables as numpy arrays; tests may edit them before write()."""

    def __init__(self, spec: SaeSpec, corpus: SyntheticCorpus):
        self.spec, self.corpus = spec, corpus
        rng = self.rng = np.random.default_rng(spec.seed)
        n = spec.n_features
        self.alive = np.ones(n, dtype=bool)
        self.alive[list(spec.dead)] = False
        self.max = np.where(self.alive, rng.lognormal(1.0, 0.5, n), np.nan).astype(np.float32)
        density = 10 ** rng.uniform(-4, -1.3, n)
        density[rng.random(n) < 0.05] = 0.3  # a few dense features
        self.n_active = np.where(self.alive, np.maximum(1, np.round(density * corpus.n_tokens)), 0).astype(np.int64)
        self.top = self._examples(spec.top_k, None)
        self.quantile = self._examples(spec.bands * spec.per_band, spec.bands)

    def _examples(self, per_feature: int, bands: int | None) -> dict[str, np.ndarray]:
        """(feature, rank[, band], seq, pos, activation) rows in contract order."""
        spec, rng = self.spec, self.rng
        feature = np.repeat(np.flatnonzero(self.alive), per_feature)
        slot = np.tile(np.arange(per_feature), int(self.alive.sum()))
        top = self.max[feature]
        if bands is None:
            fraction = np.where(slot == 0, 1.0, rng.uniform(0.4, 0.99, feature.size))
            band = None
        else:
            band = bands - 1 - slot // spec.per_band  # strongest band first
            fraction = (band + rng.uniform(0.01, 1.0, feature.size)) / bands
        activation = (top * fraction).astype(np.float32)
        order = np.lexsort((-activation, band if band is not None else slot * 0, feature))
        rows = {"feature": feature[order], "activation": activation[order]}
        if band is not None:
            rows["band"] = band[order]
        group = rows["feature"] * (bands or 1) + (rows["band"] if band is not None else 0)
        first = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
        rows["rank"] = np.arange(group.size) - np.repeat(first, np.diff(np.r_[first, group.size]))
        rows["seq"] = _distinct_seqs(rng, group.size, slot, self.corpus.spec.n_seqs)
        rows["pos"] = rng.integers(0, self.corpus.spec.seq_len, group.size)
        return rows

    def _windows(self, rows: dict[str, np.ndarray]) -> tuple[pa.Array, pa.Array]:
        """tokens and acts list columns: the window around pos, the max at pos, others below it."""
        c, L = self.spec.context, self.corpus.spec.seq_len
        start = np.maximum(rows["pos"] - c, 0)
        length = np.minimum(rows["pos"] + c, L - 1) - start + 1
        offsets = np.r_[0, np.cumsum(length)]
        local = np.arange(offsets[-1]) - np.repeat(offsets[:-1], length)
        seq = np.repeat(rows["seq"], length)
        ids = self.corpus.ids[seq, np.repeat(start, length) + local]
        peak = np.repeat(rows["activation"], length)
        acts = np.where(self.rng.random(ids.size) < 0.3, peak * self.rng.uniform(0.05, 0.95, ids.size), 0.0)
        acts = np.where(local == np.repeat(rows["pos"] - start, length), peak, acts).astype(np.float32)
        offsets = pa.array(offsets, pa.int32())
        return (pa.ListArray.from_arrays(offsets, pa.array(self.corpus.vocab).take(pa.array(ids))),
                pa.ListArray.from_arrays(offsets, pa.array(acts, pa.float32())))

    def write(self, root: Path) -> dict:
        spec, n = self.spec, self.spec.n_features
        out = root / "saes" / spec.name
        (out / "analysis").mkdir(parents=True, exist_ok=True)
        (out / "units").mkdir(parents=True, exist_ok=True)
        (out / "cfg.json").write_text(json.dumps({
            "name": spec.name, "d_in": D_IN, "d_sae": n, "k": spec.k, "architecture": "batchtopk",
            "model": "synthetic/model", "hook": f"layer-{spec.layer}", "seed": spec.seed}))
        evaluation = {"holdout_tokens": 4096, "fvu": 0.12, "l0": float(spec.k), "dead_fraction": len(spec.dead) / n}
        if spec.causal_lm:
            evaluation.update(ce_clean=3.1, ce_spliced=3.4, ce_zero=7.9, ce_recovered=(7.9 - 3.4) / (7.9 - 3.1))
        (out / "eval.json").write_text(json.dumps(evaluation))
        steps = np.arange(1, 51) * 10
        pq.write_table(pa.table({
            "step": steps, "tokens_seen": steps * 4096, "loss": 1 / np.sqrt(steps), "mse": 1 / np.sqrt(steps),
            "aux_loss": np.zeros(50), "fvu": 0.1 + 1 / np.sqrt(steps), "l0": np.full(50, float(spec.k)),
            "dead_fraction": np.linspace(0.2, 0.02, 50)}), out / "training_log.parquet")
        (out / "analysis" / "params.json").write_text(json.dumps({
            "top_k": spec.top_k, "context": spec.context, "bins": spec.bins, "percentiles": list(spec.percentiles),
            "detection_percentile": 90, "influence_k": spec.influence_k, "neighbours": spec.neighbours,
            "quantile_bands": spec.bands, "per_band": spec.per_band, "seed": spec.seed}))
        self._write_stats(out / "analysis")
        for name, rows in (("top_examples", self.top), ("quantile_examples", self.quantile)):
            tokens, acts = self._windows(rows)
            columns = {"feature": pa.array(rows["feature"], pa.int32()), "rank": pa.array(rows["rank"], pa.int32()),
                       "activation": pa.array(rows["activation"], pa.float32()),
                       "seq": pa.array(rows["seq"], pa.int32()), "pos": pa.array(rows["pos"], pa.int32()),
                       "tokens": tokens, "acts": acts}
            if "band" in rows:
                columns["band"] = pa.array(rows["band"], pa.int32())
            pq.write_table(pa.table(columns), out / "analysis" / f"{name}.parquet")
        self._write_influences(out / "analysis")
        self._write_neighbours(out / "analysis")
        self._write_labels(out / "analysis")
        self._write_units(out)
        analysis = ["feature_stats", "histograms", "top_examples", "quantile_examples", "influences", "neighbours",
                    "labels", "detection"]
        if spec.ablated:
            self._write_ablation(out / "analysis")
            analysis += ["ablation", "ablation_logits"]
        if spec.llm_labels:
            self._write_llm_labels(out / "analysis")
            analysis.append("llm_labels")
        if spec.label_alignment:
            self._write_label_alignment(out / "analysis")
            analysis.append("label_alignment")
        if spec.concepts_top_n:
            pq.write_table(concepts_table(self.rng, self.kept(), D_IN, list(self.corpus.spec.doc_labels),
                                          spec.detection_levels, spec.concepts_top_n),
                           out / "analysis" / "concepts.parquet")
            analysis.append("concepts")
        steering = {}
        if spec.steering:
            (out / "steering").mkdir(exist_ok=True)
            steering["steering"] = [self._write_experiment(e, out / "steering") for e in spec.steering]
        return SaeArtifacts(spec.name, {
            "sae_cfg": out / "cfg.json", "eval": out / "eval.json", "training_log": out / "training_log.parquet",
            "analysis_params": out / "analysis" / "params.json", "unit_map": out / "units" / "unit_map.json",
            "thresholds": out / "units" / "thresholds.parquet",
            **{name: out / "analysis" / f"{name}.parquet" for name in analysis}, **steering})

    def _write_experiment(self, e: Experiment, out: Path) -> Path:
        """A steering table as the spec has it: per (target, prompt, alpha) the texts, fluency
        (CE under the unsteered model), activations, within_margin and the prompt's best alpha."""
        targets = [(f, None) for f in e.features] or [(None, e.vector)]
        rows = []
        for feature, vector in targets:
            for p, prompt in enumerate(e.prompts):
                baseline = " " + " ".join(self.rng.choice(self.corpus.vocab[:50], 6))
                baseline_ce = float(self.rng.uniform(2.0, 4.0))
                base_act = float(self.rng.uniform(0.0, 0.5))
                group = []
                for alpha in e.alphas:
                    steered = e.texts.get((feature if vector is None else vector, p, alpha),
                                          " " + " ".join(self.rng.choice(self.corpus.vocab[:50], 5 + int(alpha))))
                    steered_ce = baseline_ce + float(alpha * self.rng.uniform(0.1, 0.6))
                    group.append({
                        "experiment": e.name, "mode": e.mode, "prompt_index": p, "prompt": prompt, "feature": feature,
                        "vector": vector, "alpha": float(alpha),
                        "scale": 1.0 if feature is None else float(self.max[feature]),
                        "baseline": baseline, "steered": steered, "baseline_ce": baseline_ce, "steered_ce": steered_ce,
                        "baseline_activation": base_act, "steered_activation": base_act + float(alpha),
                        "within_margin": steered_ce <= baseline_ce + e.ce_margin})
                best = max((r["alpha"] for r in group if r["within_margin"]), default=None)
                rows += [{**r, "best_alpha": best} for r in group]
        schema = pa.schema([("experiment", pa.string()), ("mode", pa.string()), ("prompt_index", pa.int32()),
                            ("prompt", pa.string()), ("feature", pa.int64()), ("vector", pa.string()),
                            ("alpha", pa.float64()), ("scale", pa.float64()), ("baseline", pa.string()),
                            ("steered", pa.string()), ("baseline_ce", pa.float64()), ("steered_ce", pa.float64()),
                            ("baseline_activation", pa.float64()), ("steered_activation", pa.float64()),
                            ("within_margin", pa.bool_()), ("best_alpha", pa.float64())])
        path = out / f"{e.name}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
        return path

    def ablated_features(self) -> np.ndarray:
        return np.unique(self.top["feature"])[: self.spec.ablated]

    def _write_ablation(self, out: Path) -> None:
        """ablation.parquet: a row per token of the first examples' windows of the ablated
        features (loss and effect null at position 0); ablation_logits.parquet: +/- tokens."""
        spec, c, L = self.spec, self.spec.context, self.corpus.spec.seq_len
        top = self.top
        keep = np.isin(top["feature"], self.ablated_features()) & (top["rank"] < spec.ablation_examples)
        feature, rank, seq, peak = (top[k][keep] for k in ("feature", "rank", "seq", "pos"))
        start = np.maximum(peak - c, 0)
        length = np.minimum(peak + c, L - 1) - start + 1
        local = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
        pos = np.repeat(start, length) + local
        seq_t = np.repeat(seq, length)
        first = pos == 0
        loss = np.where(first, np.nan, self.rng.uniform(0.5, 8.0, pos.size))
        effect = np.where(first, np.nan, self.rng.normal(0, 0.2, pos.size))
        nullable = lambda v: pa.array(v, pa.float32(), from_pandas=True)  # noqa: E731  (NaN -> null)
        pq.write_table(pa.table({
            "feature": pa.array(np.repeat(feature, length), pa.int64()), "rank": pa.array(np.repeat(rank, length), pa.int32()),
            "seq": pa.array(seq_t, pa.int32()), "pos": pa.array(pos, pa.int32()),
            "token": pa.array(self.corpus.vocab).take(pa.array(self.corpus.ids[seq_t, pos])),
            "activation": pa.array(self.rng.uniform(0, 1, pos.size), pa.float32()),
            "loss": nullable(loss), "loss_effect": nullable(effect)}), out / "ablation.parquet")
        k, ablated = spec.ablation_logits, self.ablated_features()
        feature = np.repeat(ablated, 2 * k)
        sign = np.tile(np.repeat(["+", "-"], k), ablated.size)
        magnitude = np.sort(self.rng.uniform(0.01, 1.0, (ablated.size * 2, k)), axis=1)[:, ::-1].ravel()
        token_id = self.rng.integers(0, len(self.corpus.vocab), feature.size)
        pq.write_table(pa.table({
            "feature": pa.array(feature, pa.int64()), "sign": sign, "rank": pa.array(np.tile(np.arange(k), 2 * ablated.size), pa.int32()),
            "token_id": pa.array(token_id, pa.int32()), "token": pa.array(self.corpus.vocab).take(pa.array(token_id)),
            "effect": pa.array(np.where(sign == "+", magnitude, -magnitude), pa.float32())}),
            out / "ablation_logits.parquet")

    def llm_sent(self) -> np.ndarray:
        """The features sent for an LLM label: those with examples, but every f % 3 == 2 not fixed."""
        sent = np.unique(self.top["feature"])
        return sent[(sent % 3 != 2) | np.isin(sent, list(self.spec.fixed_llm_labels))]

    def llm_failed(self) -> int:
        """The feature whose labelling request failed: the last one sent without a fixed label."""
        return int([f for f in self.llm_sent() if int(f) not in self.spec.fixed_llm_labels][-1])

    def _write_llm_labels(self, out: Path) -> None:
        """As autointerp writes them: a row per feature sent; the label null where the request failed."""
        sent, failed = self.llm_sent(), self.llm_failed()
        labels = [None if f == failed else self.spec.fixed_llm_labels.get(int(f), f"llm: feature {f} likes w{f % 7}")
                  for f in sent]
        errors = ["HTTP 500: server error" if f == failed else None for f in sent]
        pq.write_table(pa.table({"feature": pa.array(sent, pa.int64()), "label": pa.array(labels, pa.string()),
                                 "model": ["synthetic/llm"] * sent.size, "error": pa.array(errors, pa.string())}),
                       out / "llm_labels.parquet")

    def _write_label_alignment(self, out: Path) -> None:
        """A row per (feature, corpus label): cosine, and the feature's rank within the label."""
        n = self.spec.n_features
        labels = sorted([*self.corpus.spec.doc_labels, *(f"topic-{i}" for i in range(4))])  # more than the page shows
        cosine = self.rng.uniform(-0.5, 0.9, (len(labels), n)).astype(np.float32)
        rank = np.argsort(np.argsort(-cosine, axis=1, kind="stable"), axis=1)
        pq.write_table(pa.table({
            "feature": pa.array(np.tile(np.arange(n), len(labels)), pa.int64()),
            "label": pa.array(np.repeat(labels, n)), "cosine": pa.array(cosine.ravel(), pa.float32()),
            "rank": pa.array(rank.ravel(), pa.int32())}), out / "label_alignment.parquet")

    def _write_stats(self, out: Path) -> None:
        spec, n = self.spec, self.spec.n_features
        alive, top = self.alive, self.max.astype(np.float64)
        null = lambda values: pa.array(np.where(alive, values, np.nan), pa.float64(), from_pandas=True)  # noqa: E731
        mean = top * 0.3
        pq.write_table(pa.table({
            "feature": pa.array(np.arange(n), pa.int32()), "n_active": self.n_active,
            "density": self.n_active / self.corpus.n_tokens, "min": null(top * 0.01), "max": null(top),
            "mean": null(mean), "std": null(top * 0.2), "sum": np.where(alive, mean * self.n_active, 0.0)}),
            out / "feature_stats.parquet")
        shape = np.exp(-5 * np.linspace(0, 1, spec.bins))
        counts = self.rng.multinomial(self.n_active, shape / shape.sum())
        edges = np.linspace(0, np.nan_to_num(top), spec.bins + 1).T
        pq.write_table(pa.table({
            "feature": pa.array(np.arange(n), pa.int32()),
            "edges": pa.array(list(edges), pa.list_(pa.float64())),
            "counts": pa.array(list(counts), pa.list_(pa.int64()))}), out / "histograms.parquet")

    def _write_influences(self, out: Path) -> None:
        n, k = self.spec.n_features, self.spec.influence_k
        feature = np.repeat(np.arange(n), 2 * k)
        sign = np.tile(np.repeat(["+", "-"], k), n)
        rank = np.tile(np.tile(np.arange(k), 2), n)
        magnitude = np.sort(self.rng.uniform(0.1, 2.0, (n * 2, k)), axis=1)[:, ::-1].ravel()
        token_id = self.rng.integers(0, len(self.corpus.vocab), feature.size)
        pq.write_table(pa.table({
            "feature": pa.array(feature, pa.int32()), "sign": sign, "rank": pa.array(rank, pa.int32()),
            "token_id": pa.array(token_id, pa.int32()), "token": pa.array(self.corpus.vocab).take(pa.array(token_id)),
            "score": np.where(sign == "+", magnitude, -magnitude)}), out / "influences.parquet")

    def _write_neighbours(self, out: Path) -> None:
        k, alive = self.spec.neighbours, np.flatnonzero(self.alive)
        parts = []
        for kind, pool in (("cosine", np.arange(self.spec.n_features)), ("coactivation", alive)):
            # k distinct non-zero steps around the pool, so never the feature itself.
            gap = max(1, (pool.size - 1) // k)
            steps = np.cumsum(self.rng.integers(1, gap + 1, (pool.size, k)), axis=1)
            other = pool[(np.arange(pool.size)[:, None] + steps) % pool.size]
            score = -np.sort(-self.rng.uniform(0.05, 0.9, (pool.size, k)), axis=1)
            parts.append((np.repeat(pool, k), [kind] * other.size, np.tile(np.arange(k), pool.size),
                          other.ravel(), score.ravel()))
        feature, kind, rank, other, score = (np.concatenate(c) for c in zip(*parts))
        order = np.lexsort((rank, kind, feature))
        pq.write_table(pa.table({
            "feature": pa.array(feature[order], pa.int32()), "kind": pa.array(kind[order]),
            "rank": pa.array(rank[order], pa.int32()), "other": pa.array(other[order], pa.int32()),
            "score": score[order]}), out / "neighbours.parquet")

    def _write_labels(self, out: Path) -> None:
        """Like the TF-IDF labeler: three tokens and their scores, the label their join."""
        features = np.unique(self.top["feature"])
        words = self.rng.integers(0, len(self.corpus.vocab), (features.size, 3))
        tokens = [[self.corpus.vocab[w] for w in row] for row in words]
        columns = {"feature": pa.array(features, pa.int32()),
                   "label": [self.spec.fixed_labels.get(f, ", ".join(t)) for f, t in zip(features, tokens)]}
        if self.spec.scored_labels:
            columns["tokens"] = pa.array(tokens, pa.list_(pa.string()))
            scores = -np.sort(-self.rng.uniform(0, 0.1, (features.size, 3)), axis=1)
            columns["scores"] = pa.array(list(scores), pa.list_(pa.float64()))
        pq.write_table(pa.table(columns), out / "labels.parquet")

    def kept(self) -> np.ndarray:
        return np.flatnonzero(self.alive & (self.n_active / self.corpus.n_tokens <= self.spec.max_density))

    def _write_units(self, out: Path) -> None:
        spec, n = self.spec, self.spec.n_features
        kept = self.kept()
        (out / "units" / "unit_map.json").write_text(json.dumps({
            "kept_units": kept.tolist(), "n_original": n, "n_filtered": int(kept.size),
            "criteria": {"min_density": 0.0, "max_density": spec.max_density, "min_max_activation": 0.0}}))
        columns = {"unit": pa.array(kept, pa.int32()), "new_unit": pa.array(np.arange(kept.size), pa.int32())}
        for q in spec.percentiles:
            name = "p" + f"{q:g}".replace(".", "_")
            columns[name] = self.max[kept].astype(np.float64) * (0.2 + 0.7 * q / 100)
        pq.write_table(pa.table(columns), out / "units" / "thresholds.parquet")
        calibrated = self.max[kept] * 0.5
        pq.write_table(detection_table(self.rng, kept, calibrated, list(self.corpus.spec.doc_labels),
                                       spec.detection_levels), out / "analysis" / "detection.parquet")


def write_run(root: Path, corpus: SyntheticCorpus, saes: list[SyntheticSae], model: str = "synthetic/model"):
    """Write everything; return build_dashboard's (run, saes) arguments."""
    tables = corpus.write(root)
    return Run(model, tables["tokens"], tables["documents"]), [sae.write(root) for sae in saes]
