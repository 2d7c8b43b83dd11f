"""Split long Chinese and English text into overlapping chunks at sentence punctuation, keeping offsets.

Sizes are in characters: a Chinese character is roughly one token for our tokenizers and a chunk's length
stays predictable without loading the model. A chunk ends after a sentence end (。！？；… or . ! ? followed by
space, a quote or a line end, so "3.14" and "e.g." inside a word do not split) or at a blank line; the next
chunk starts at a sentence start that repeats at most ``overlap`` characters. A single sentence longer than
``chunk_size`` is cut at ``chunk_size`` (then at the last comma or space before it, when there is one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from m3e.errors import InputError

# A sentence ends after Chinese end punctuation (with any closing quotes/brackets), after . ! ? followed by
# whitespace or a closing quote, or at a paragraph break.
_END = re.compile(r"(?:[。！？；…!?？！]+[”’」』）)\"']*|\.(?=[\s\"'”’)]|$)[\"'”’)]*|\n\s*\n)")
_SOFT = re.compile(r"[，,、：:\s]")


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    text: str


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, covering the text without gaps."""
    spans, start = [], 0
    for m in _END.finditer(text):
        end = m.end()
        if end > start:
            spans.append((start, end))
            start = end
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _cut_long(start: int, end: int, text: str, size: int) -> list[tuple[int, int]]:
    """A sentence longer than ``size``: pieces of at most ``size``, preferring to cut after a comma or space."""
    pieces = []
    while end - start > size:
        window = text[start:start + size]
        soft = [m.end() for m in _SOFT.finditer(window)]
        cut = soft[-1] if soft and soft[-1] >= size // 2 else size
        pieces.append((start, start + cut))
        start += cut
    pieces.append((start, end))
    return pieces


def chunk_text(text: str, chunk_size: int = 400, overlap: int = 80) -> list[Chunk]:
    """Chunks of at most ``chunk_size`` characters (0: the whole text as one chunk), stripped of edge space."""
    if chunk_size < 0 or overlap < 0:
        raise InputError("chunk size and overlap must not be negative")
    if chunk_size and overlap >= chunk_size:
        raise InputError(f"overlap ({overlap}) must be smaller than the chunk size ({chunk_size})")
    if chunk_size == 0 or len(text) <= chunk_size:
        return _stripped([(0, len(text))], text)
    units: list[tuple[int, int]] = []
    for s, e in sentence_spans(text):
        if not text[s:e].strip():  # a blank-line break belongs to the sentence before it
            if units:
                units[-1] = (units[-1][0], e)
            continue
        units.extend(_cut_long(s, e, text, chunk_size))
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        j = i
        while j + 1 < len(units) and units[j + 1][1] - units[i][0] <= chunk_size:
            j += 1
        spans.append((units[i][0], units[j][1]))
        if j + 1 >= len(units):
            break
        # Step back over whole sentences that fit in the overlap, but always move forward.
        k = j + 1
        while k - 1 > i and units[j][1] - units[k - 1][0] <= overlap:
            k -= 1
        i = k
    return _stripped(spans, text)


def _stripped(spans: list[tuple[int, int]], text: str) -> list[Chunk]:
    out = []
    for s, e in spans:
        piece = text[s:e]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece.rstrip())
        if trail > lead:
            out.append(Chunk(s + lead, s + trail, text[s + lead:s + trail]))
    return out
