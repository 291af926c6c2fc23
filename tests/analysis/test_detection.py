import dataclasses

import numpy as np
import pytest

from saeflow.analysis.detection import detection_scores, item_maxima
from saeflow.errors import SaeflowError

from .problems import make_problem


def dense_item_maxima(problem):
    doc_max = np.zeros((problem.doc.max() + 1, problem.n_features), dtype=np.float32)
    np.maximum.at(doc_max, problem.doc, problem.dense)
    return doc_max


def oracle(doc_max, thresholds, member):
    rows = []
    for u, column in enumerate(doc_max.T):
        for label, positive in enumerate(member.T):
            detected = column >= thresholds[u]
            tp = (detected & positive).sum()
            precision = tp / detected.sum() if detected.sum() else np.nan
            recall = tp / positive.sum() if positive.sum() else np.nan
            f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else (
                0.0 if precision + recall == 0 else np.nan)
            pos, neg = column[positive], column[~positive]
            if pos.size and neg.size:
                auroc = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
            else:
                auroc = np.nan
            rows.append((u, label, precision, recall, f1, auroc))
    return [np.array(column, dtype=float) for column in zip(*rows)]


@pytest.mark.parametrize("tied", [True, False])
def test_scores_match_the_oracle(tied):
    problem = make_problem(20, n_seqs=40, tied=tied)
    n_docs = problem.doc.max() + 1
    rng = np.random.default_rng(0)
    member = rng.random((n_docs, 4)) < 0.4
    member[:, 2] = True  # on every document: AUROC undefined
    member[:, 3] = False  # on none: recall and AUROC undefined
    doc, label = np.nonzero(member)
    doc, label = np.append(doc, doc[0]), np.append(label, label[0])  # a repeated pair counts once

    doc_max = dense_item_maxima(problem)
    thresholds = np.array([np.percentile(c[c > 0], 60) if (c > 0).any() else np.nan for c in problem.dense.T])
    thresholds[5] = 1e9  # detects nothing: precision undefined

    got = detection_scores(item_maxima(problem.entries(), problem.doc), thresholds, doc, label, n_docs, 4)
    # As a shard job scores its features: local unit ids from 0, shifted back afterwards.
    shards = []
    for a, b in ((0, 4), (4, 10)):
        shard = problem.shard(a, b)
        maxima = item_maxima(dataclasses.replace(shard, feature=shard.local, first_feature=0), problem.doc)
        part = detection_scores(maxima, thresholds[a:b], doc, label, n_docs, 4)
        shards.append(dataclasses.replace(part, unit=part.unit + a))
    expected = oracle(doc_max, thresholds, member)
    for name, column in zip(("unit", "label", "precision", "recall", "f1", "auroc"), expected):
        np.testing.assert_allclose(getattr(got, name), column, rtol=1e-12, atol=1e-15, err_msg=name)
        sharded = np.concatenate([getattr(part, name) for part in shards])
        np.testing.assert_allclose(sharded, column, rtol=1e-12, atol=1e-15, err_msg=name)
    assert np.isnan(got.auroc[got.label >= 2]).all()


def test_item_maxima_match_the_oracle():
    problem = make_problem(21, n_seqs=20)
    doc_max = dense_item_maxima(problem)
    doc, unit = np.nonzero(doc_max)
    order = np.lexsort((doc, unit))
    got = item_maxima(problem.entries(), problem.doc)
    np.testing.assert_array_equal(got.unit, unit[order])
    np.testing.assert_array_equal(got.doc, doc[order])
    np.testing.assert_array_equal(got.value, doc_max[doc, unit][order])


def test_bad_input_is_an_error():
    problem = make_problem(22)
    maxima = item_maxima(problem.entries(), problem.doc)
    n_docs = problem.doc.max() + 1
    with pytest.raises(SaeflowError):
        detection_scores(maxima, np.zeros(problem.n_features), [], [], n_docs, 1)
    with pytest.raises(SaeflowError):
        detection_scores(maxima, np.ones(problem.n_features), [n_docs], [0], n_docs, 1)
    with pytest.raises(SaeflowError):
        detection_scores(maxima, np.ones(problem.n_features), [0, 1], [0], n_docs, 1)
    with pytest.raises(SaeflowError):
        detection_scores(maxima, np.ones(2), [], [], n_docs, 1)
