"""The naive baseline of bench/analysis.py: the 'before' code, one Python loop step per feature over
its dense column, as analysis scripts were written before saeflow. Plain numpy, no saeflow."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np


@dataclass
class NaiveCorpus:
    """What a naive script keeps of the corpus for the first n tokens."""

    seq_starts: np.ndarray
    seq_stops: np.ndarray
    doc_starts: np.ndarray
    token_id: np.ndarray
    token_str: list
    idf: np.ndarray  # per token id, 0 where unseen
    label_masks: np.ndarray  # [n_labels, n_docs] bool


def naive_example(col, s, corpus: NaiveCorpus, context):
    a, b = corpus.seq_starts[s], corpus.seq_stops[s]
    pos = int(np.argmax(col[a:b]))
    lo, hi = max(a, a + pos - context), min(b, a + pos + context + 1)
    ids = corpus.token_id[lo:hi].tolist()
    return {"seq": int(s), "pos": pos, "activation": float(col[a + pos]), "ids": ids,
            "tokens": [corpus.token_str[t] for t in ids], "acts": col[lo:hi].tolist()}


def naive_feature_tables(col, f, corpus: NaiveCorpus, p, rng) -> dict:
    """Every activation table's rows for one feature, from its dense column (p: an AnalysisParams)."""
    nz = np.nonzero(col)[0]
    values = col[nz].astype(np.float64)
    out = {"feature": f, "n_active": len(nz), "density": len(nz) / len(col)}
    if not len(nz):
        return out
    peak = values.max()
    out.update(min=values.min(), max=peak, mean=values.mean(), std=values.std(), sum=values.sum())
    out["counts"], out["edges"] = np.histogram(values, bins=p.bins, range=(0, peak))
    qs = p.all_percentiles
    out["percentiles"] = np.percentile(values, qs)

    seq_max = np.maximum.reduceat(col, corpus.seq_starts)
    fired = [s for s in range(len(seq_max)) if seq_max[s] > 0]
    ranked = sorted(fired, key=lambda s: (-seq_max[s], s))
    out["top"] = [naive_example(col, s, corpus, p.context) for s in ranked[: p.top_k]]
    band_edges = np.linspace(0, seq_max.max(), p.quantile_bands + 1)
    out["bands"] = []
    for band in range(p.quantile_bands):
        last = band == p.quantile_bands - 1
        members = [s for s in fired if band_edges[band] <= seq_max[s] < band_edges[band + 1]
                   or (last and seq_max[s] == band_edges[-1])]
        chosen = rng.choice(members, min(p.per_band, len(members)), replace=False) if members else []
        out["bands"] += [(band, naive_example(col, s, corpus, p.context))
                         for s in sorted(chosen, key=lambda s: (-seq_max[s], s))]

    counts = Counter(t for example in out["top"] for t in example["ids"])
    total = sum(counts.values())
    best = sorted(counts, key=lambda t: (-counts[t] / total * corpus.idf[t], t))[:3]
    out["label"] = ", ".join(corpus.token_str[t].strip() for t in best)

    doc_max = np.maximum.reduceat(col, corpus.doc_starts)
    detected = doc_max >= out["percentiles"][qs.index(p.detection_percentile)]
    out["detection"] = []
    for has in corpus.label_masks:
        true_pos = int((detected & has).sum())
        precision = true_pos / detected.sum() if detected.sum() else None
        recall = true_pos / has.sum() if has.sum() else None
        pos, neg = doc_max[has], doc_max[~has]
        auroc = (((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg))) if len(pos) and len(neg) else None
        out["detection"].append((precision, recall, auroc))
    return out


def naive_coactivation(active, col, f, n_active, n, block=4096) -> list:
    """Jaccard neighbours of f: the dense activity rows of its tokens, summed."""
    rows = np.nonzero(col)[0]
    shared = np.zeros(active.shape[1], np.int64)
    for start in range(0, len(rows), block):
        shared += active[rows[start : start + block]].sum(axis=0)
    shared[f] = 0
    union = n_active[f] + n_active - shared
    jaccard = np.divide(shared, union, out=np.zeros(len(shared)), where=union > 0)
    return [(int(g), float(jaccard[g])) for g in np.argsort(-jaccard, kind="stable")[:n] if shared[g] > 0]


def naive_influence(W_dec, W_U, f, strings, k) -> dict:
    scores = W_dec[f] @ W_U
    order = np.argsort(scores)
    return {"+": [(int(t), strings[t], float(scores[t])) for t in order[::-1][:k]],
            "-": [(int(t), strings[t], float(scores[t])) for t in order[:k]]}


def naive_cosine(W_dec, norms, f, n) -> list:
    cosine = (W_dec @ W_dec[f]) / (norms * norms[f])
    cosine[f] = -np.inf
    return [(int(g), float(cosine[g])) for g in np.argsort(-cosine)[:n]]
