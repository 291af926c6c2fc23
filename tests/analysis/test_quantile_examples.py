import numpy as np
import pytest

from saeflow.analysis.quantile_examples import sample_bands, sample_key
from saeflow.analysis.top_examples import SeqMax, sequence_maxima
from saeflow.errors import SaeflowError

from .problems import make_problem

MASK = 2**64 - 1


def splitmix(z):
    """SplitMix64's output function on a Python int, written from the module docstring."""
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def oracle(maxima, bands, per_band, seed):
    rows = []
    for f in np.unique(maxima.feature):
        mine = maxima.feature == f
        activation, seq, token = maxima.activation[mine], maxima.seq[mine], maxima.token[mine]
        edges = np.linspace(0.0, float(activation.max()), bands + 1)
        band = np.array([np.flatnonzero(np.histogram([a], edges)[0])[0] for a in activation])
        for b in range(bands):
            members = np.flatnonzero(band == b)
            keys = [splitmix(splitmix(splitmix(seed) ^ int(f)) ^ int(seq[i])) for i in members]
            drawn = members[np.lexsort((seq[members], np.array(keys, dtype=np.uint64)))][:per_band]
            drawn = sorted(drawn, key=lambda i: (-activation[i], seq[i]))
            rows += [(int(f), b, r, float(activation[i]), int(seq[i]), int(token[i])) for r, i in enumerate(drawn)]
    return rows


def as_rows(examples):
    names = ("feature", "band", "rank", "activation", "seq", "token")
    return list(zip(*(getattr(examples, n).tolist() for n in names)))


@pytest.mark.parametrize("bands, per_band, seed", [(1, 2, 0), (3, 1, 5), (4, 2, 123456789), (2, 100, 1)])
def test_samples_match_the_documented_procedure(bands, per_band, seed):
    problem = make_problem(11, n_seqs=30, tied=seed != 5)
    maxima = sequence_maxima(problem.entries(), problem.seq)
    got = sample_bands(maxima, bands, per_band, seed)
    assert as_rows(got) == oracle(maxima, bands, per_band, seed)
    assert 0 not in got.feature  # never sample where the feature does not fire


def test_a_feature_sample_does_not_depend_on_the_shard():
    problem = make_problem(12, n_seqs=30)
    whole = sample_bands(sequence_maxima(problem.entries(), problem.seq), 3, 2, 7)
    shard = sample_bands(sequence_maxima(problem.shard(3, 5), problem.seq), 3, 2, 7)
    keep = (whole.feature >= 3) & (whole.feature < 5)
    assert as_rows(shard) == [row for row, k in zip(as_rows(whole), keep) if k]


def test_sampling_is_uniform_over_a_band():
    n_features, n_seqs = 3000, 10
    maxima = SeqMax(
        feature=np.repeat(np.arange(n_features), n_seqs),
        seq=np.tile(np.arange(n_seqs), n_features),
        activation=np.ones(n_features * n_seqs, dtype=np.float32),
        token=np.tile(np.arange(n_seqs), n_features),
    )
    drawn = sample_bands(maxima, bands=2, per_band=3, seed=0)
    assert (drawn.band == 1).all()
    times = np.bincount(drawn.seq, minlength=n_seqs)
    assert abs(times - 900).max() < 90  # 900 expected each, binomial sd 25


def test_key_is_the_documented_splitmix():
    feature, seq = np.array([0, 7, 2**31]), np.array([5, 0, 123])
    expected = [splitmix(splitmix(splitmix(42) ^ int(f)) ^ int(s)) for f, s in zip(feature, seq)]
    assert sample_key(42, feature, seq).tolist() == expected


def test_bad_settings_are_errors():
    maxima = sequence_maxima(make_problem(0).entries(), make_problem(0).seq)
    with pytest.raises(SaeflowError):
        sample_bands(maxima, 0, 2, 0)
    with pytest.raises(SaeflowError):
        sample_bands(maxima, 2, 2, -1)
