from collections import Counter

import numpy as np
import pytest

from saeflow.analysis.labels import label_tokens
from saeflow.errors import SaeflowError


def oracle(feature, token_id, idf, n):
    rows = []
    for f in np.unique(feature):
        counts = Counter(token_id[feature == f].tolist())
        total = sum(counts.values())
        scores = {t: c / total * idf[t] for t, c in counts.items()}
        best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:n]
        rows += [(int(f), r, t, s) for r, (t, s) in enumerate(best)]
    return rows


@pytest.mark.parametrize("n", [1, 3, 10])
def test_top_tfidf_tokens_match_the_oracle(n):
    rng = np.random.default_rng(n)
    vocab = 12
    idf = rng.choice([0.0, 0.5, 1.0, 2.0], vocab)  # repeated idf values make tied scores
    feature = np.repeat([0, 3, 4, 9], [30, 1, 12, 25])
    token_id = rng.integers(0, vocab, feature.size)
    shuffle = rng.permutation(feature.size)
    table_order = rng.permutation(vocab)
    got = label_tokens(feature[shuffle], token_id[shuffle], np.arange(vocab)[table_order], idf[table_order], n)
    rows = list(zip(*(getattr(got, name).tolist() for name in ("feature", "rank", "token_id", "score"))))
    assert rows == oracle(feature, token_id, idf, n)


def test_a_token_missing_from_the_idf_table_is_an_error():
    with pytest.raises(SaeflowError):
        label_tokens(np.array([0]), np.array([5]), np.array([1, 2]), np.array([1.0, 1.0]))
