"""Windows' text read back from the corpus tables that tokenize_corpus writes."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saeflow.corpus import Document
from saeflow.errors import SaeflowError
from saeflow.sequences import tokenize_corpus
from saeflow.text_pieces import own_pieces
from saeflow.window_text import SpanRows, merge_ranges, range_pieces, window_pieces
from test_text_pieces import byte_bpe, wordpiece  # noqa: F401  (fixtures)

TEXTS = ["unbelievable résumé\n\nnext 日本 " * 3, "Tokenization of naïve text.\tTabs too."]


def test_overlapping_windows_merge_and_disjoint_ones_do_not():
    window_range, ranges = merge_ranges(np.array([0, 0, 0, 1, 0]), np.array([0, 2, 9, 0, 3]), np.array([3, 3, 1, 2, 1]))
    assert list(zip(ranges.seq.tolist(), ranges.start.tolist(), np.diff(ranges.ptr).tolist())) == \
        [(0, 0, 5), (0, 9, 1), (1, 0, 2)]
    assert window_range.tolist() == [0, 0, 1, 2, 0]


@pytest.fixture(params=["wordpiece", "byte_bpe"])
def corpus(request, tmp_path):
    paths = [tmp_path / name for name in ("tokens.parquet", "documents.parquet", "idf.parquet")]
    tokenize_corpus([Document(f"d{i}", text) for i, text in enumerate(TEXTS)], request.getfixturevalue(request.param),
                    8, *paths)
    return pq.read_table(paths[0]).to_pydict(), paths[0], paths[1]


def test_whole_sequences_and_overlapping_windows_read_as_their_text(corpus):
    tokens, tokens_path, documents_path = corpus
    seq, pos = np.array(tokens["seq"]), np.array(tokens["pos"])
    n_seqs = seq.max() + 1
    lengths = np.bincount(seq)
    # Every whole sequence, and two overlapping windows inside each that has room for them.
    windows = [(s, 0, lengths[s]) for s in range(n_seqs)] + \
              [(s, start, length) for s in range(n_seqs) for start, length in ((1, 3), (2, 4))
               if start + length <= lengths[s]]
    w_seq, w_start, w_length = (np.array(column) for column in zip(*windows))
    pieces, special = window_pieces(tokens_path, documents_path, w_seq, w_start, w_length)
    pieces = pieces.to_pylist()
    assert len(pieces) == len(special) == w_length.sum()
    at = 0
    for s, start, length in windows:
        rows = [i for i in np.flatnonzero(seq == s) if start <= pos[i] < start + length]
        shown = pieces[at : at + length]
        content = [j for j, i in enumerate(rows) if not tokens["special"][i]]
        first, last = rows[content[0]], rows[content[-1]]
        text = TEXTS[tokens["doc"][first]]
        assert "".join(shown[j] for j in content) == text[tokens["start"][first] : tokens["end"][last]]
        assert [shown[j] for j, i in enumerate(rows) if tokens["special"][i]] == \
            [tokens["token"][i] for i in rows if tokens["special"][i]]
        assert special[at : at + length].tolist() == [tokens["special"][i] for i in rows]
        at += length


def test_documents_without_text_are_an_error(corpus, tmp_path):
    _, tokens_path, documents_path = corpus
    old = tmp_path / "old_documents.parquet"
    pq.write_table(pq.read_table(documents_path).drop_columns(["text"]), old)
    with pytest.raises(SaeflowError, match=r"no column \[.text.\]"):
        window_pieces(tokens_path, old, np.array([0]), np.array([0]), np.array([2]))


def test_a_window_beyond_its_sequence_is_an_error(corpus):
    _, tokens_path, documents_path = corpus
    with pytest.raises(SaeflowError, match="no token at position 8 of sequence 0"):
        window_pieces(tokens_path, documents_path, np.array([0]), np.array([6]), np.array([3]))


def test_pieces_come_the_same_in_parts_of_any_size():
    text = "ab cd\nef"
    rows = SpanRows(np.zeros(6, np.int64), pa.array(["<s>", "ab", "cd", "ef", "cd", "ef"]),
                    np.array([True, False, False, False, False, False]), np.array([-1, 0, 3, 6, 3, 6]),
                    np.array([-1, 2, 5, 8, 5, 8]))
    ptr = np.array([0, 4, 4, 5, 6])  # runs: a whole sequence, an empty one, two single tokens
    expected = ["<s>", "ab", " cd", "\nef", "cd", "ef"]
    for rows_per_part in (1, 2, 3, 100):
        assert range_pieces(rows, {0: text}, ptr, rows_per_part).to_pylist() == expected
        assert range_pieces(rows, {0: text}, ptr, rows_per_part, own_pieces).to_pylist() == \
            ["<s>", "ab", "cd", "ef", "cd", "ef"]
