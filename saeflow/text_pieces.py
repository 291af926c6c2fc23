"""The text a window of tokens shows to people, rebuilt from the tokens' character spans.

Decoded token strings are not the text: WordPiece marks word-inner pieces with `##`, byte-level
BPE splits a character into several tokens that decode to U+FFFD, and neither carries the
spacing or line breaks between tokens. The spans (`start`/`end` in tokens.parquet) index the
document's text as written, so each token shows the text from where the previous one ended to
its own end: joined, a window's pieces are exactly the document's text it covers.
"""

from __future__ import annotations

from collections.abc import Sequence


def text_pieces(text: str, tokens: Sequence[str], special: Sequence[bool], start: Sequence[int],
                end: Sequence[int]) -> list[str]:
    """The piece each token of a window (consecutive tokens of one sequence) shows.

    A content token shows the document text from the end of the text shown so far (for the
    window's first, from its own start) to its end, so the whitespace before it is its own;
    tokens that share a span (the bytes of one character) give it to the first, the rest show
    "". A special token (BOS, CLS, ...) is not part of the text and shows its token string, as
    does a content token without a span (-1: the tokenizer gives no offsets).
    """
    pieces = []
    shown_to = None  # end of the text shown so far, once a spanned token has been shown
    for token, is_special, lo, hi in zip(tokens, special, start, end):
        if is_special or lo < 0:
            pieces.append(token)
            continue
        if shown_to is None:
            shown_to = lo
        if hi > shown_to:
            pieces.append(text[shown_to:hi])
            shown_to = hi
        else:
            pieces.append("")
    return pieces


def own_pieces(text: str, tokens: Sequence[str], special: Sequence[bool], start: Sequence[int],
               end: Sequence[int]) -> list[str]:
    """The piece each token shows where it opens a window (text_pieces of it alone): its own text,
    without the whitespace before it. For every token at once, rather than a window each."""
    return [token if is_special or lo < 0 else text[lo:hi]
            for token, is_special, lo, hi in zip(tokens, special, start, end)]
