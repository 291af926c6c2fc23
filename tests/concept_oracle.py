"""Concept detection recomputed by brute force from a run's tables and a dense [tokens, units]
matrix: items built by looping over documents and tokens, scores and AUROC by their definitions
(every positive/negative pair compared)."""

from __future__ import annotations

import numpy as np


def scored_items(tokens: dict, documents: list[dict], level: str, split: str):
    """Per item its token indices, and per label the set of items that carry it."""
    items, carriers = [], {}
    for document in documents:
        if document["split"] != split:
            continue
        content = [t for t in np.flatnonzero(tokens["doc"] == document["doc"]) if not tokens["special"][t]]
        if level == "document" and content:
            for label in document["labels"]:
                carriers.setdefault(label, set()).add(len(items))
            items.append(content)
        for t in content if level == "token" else []:
            for span in document["spans"]:
                if tokens["start"][t] < span["end"] and tokens["end"][t] > span["start"] and tokens["end"][t] > tokens["start"][t]:
                    carriers.setdefault(span["label"], set()).add(len(items))
            items.append([t])
    return items, carriers


def calibration_thresholds(values: np.ndarray, tokens: dict, documents: list[dict], q: float, nonzero: bool):
    """Per unit (column) the q-th percentile of its values on calibration content tokens (only the
    nonzero ones for SAE units); NaN where there is none."""
    split = np.array([d["split"] for d in documents])[tokens["doc"]]
    rows = values[(split == "calibration") & ~tokens["special"]]
    thresholds = np.full(values.shape[1], np.nan)
    for unit in range(values.shape[1]):
        column = rows[:, unit][rows[:, unit] > 0] if nonzero else rows[:, unit]
        if column.size:
            thresholds[unit] = np.percentile(column, q)
    return thresholds


def detection(values: np.ndarray, thresholds: np.ndarray, items, carriers, labels: list[str]) -> dict:
    """(unit, label) -> (precision, recall, f1, auroc), None where undefined."""
    score = np.stack([values[tokens].max(axis=0) for tokens in items])  # [items, units]
    detected = score >= thresholds  # NaN thresholds detect nothing
    result = {}
    for label in labels:
        positive = np.isin(np.arange(len(items)), list(carriers.get(label, ())))
        for unit in range(values.shape[1]):
            hits = (detected[:, unit] & positive).sum()
            precision = hits / detected[:, unit].sum() if detected[:, unit].any() else None
            recall = hits / positive.sum() if positive.any() else None
            f1 = None if precision is None or recall is None else (
                0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
            pos, neg = score[positive, unit], score[~positive, unit]
            auroc = (np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
                     if pos.size and neg.size else None)
            result[unit, label] = (precision, recall, f1, auroc)
    return result


def best(scores: dict, criterion: int, top_n: int) -> list:
    """Units with a defined calibration score, best first (ties: smaller unit, then sign +1)."""
    defined = [(key, value) for key, value in scores.items() if value[criterion] is not None]
    ranked = sorted(defined, key=lambda item: (-item[1][criterion], item[0][0], -item[0][1]))
    return [key for key, _ in ranked[:top_n]]
