"""Query -> passage training records built from sentence pairs, for sources that have no passages.

Why: pairs of short sentences teach sentence-to-sentence similarity only, and tuning on them alone moves how a
model embeds long texts (retrieval and long-document similarity drop). A pseudo-passage keeps the retrieval
shape: the anchor of a positive pair is the query, and its positive is hidden among ``size - 1`` filler
sentences of the same source; the passage is embedded with the passage prompt at passage length.

Fillers come only from records that are not queries here and are used once each, so no passage holds the
paraphrase of another query (which would be a false in-batch negative).
"""

from __future__ import annotations

import random
import re

from m3e.data.records import Record, Source
from m3e.errors import InputError

_ENDS = re.compile(r"[。！？!?.…；;]['\"”’」』)）]*$")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _sentence(text: str) -> str:
    """The text as one sentence of a passage: end punctuation added when it has none (。 for Chinese)."""
    text = text.strip()
    if _ENDS.search(text):
        return text
    return text + ("。" if _CJK.search(text) else ".")


def join_sentences(sentences: list[str]) -> str:
    """Chinese sentences follow each other directly; a space goes next to any sentence without Chinese."""
    out, last_cjk = "", True
    for s in (_sentence(t) for t in sentences):
        cjk = bool(_CJK.search(s))
        out += (" " if out and not (cjk and last_cjk) else "") + s
        last_cjk = cjk
    return out


def to_passages(source: Source, *, size: int = 10, records: int | None = None, min_score: float | None = None,
                seed: int = 0) -> Source:
    """A pair source of (anchor, pseudo-passage holding the positive at a random place)."""
    if size < 2:
        raise InputError(f"{source.name}: passages need size >= 2 (the positive plus fillers), got {size}")
    rng = random.Random(seed)
    positive = [r for r in source.records if source.kind != "scored"
                or (r.score is not None and r.score >= (min_score if min_score is not None else 1.0))]
    if source.kind == "scored" and min_score is None and not positive:
        raise InputError(f"{source.name}: no scored pair reaches 1.0; set passages.min_score")
    rng.shuffle(positive)
    # as many queries as the fillers allow: each query needs size - 1 filler texts of its own
    query_texts: set[str] = set()
    pool_records = list(source.records)
    rng.shuffle(pool_records)
    n_total = len({t for r in source.records for t in (r.anchor, r.positive)})
    most = min(len(positive), records or len(positive), n_total // (size + 1))
    chosen = positive[:most]
    for r in chosen:
        query_texts.update((r.anchor, r.positive))
    fillers = list(dict.fromkeys(t for r in pool_records for t in (r.anchor, r.positive, *r.negatives)
                                 if t not in query_texts))
    rng.shuffle(fillers)
    out = Source(source.name, "pair", [], weight=source.weight, instruction=source.instruction,
                 doc_instruction=source.doc_instruction or "passage", columns=source.columns,
                 keep_base=source.keep_base)
    out.skipped.merge(source.skipped)
    for i, r in enumerate(chosen):
        fill = fillers[i * (size - 1):(i + 1) * (size - 1)]
        if len(fill) < size - 1:
            out.skipped["not enough filler sentences for a passage"] += len(chosen) - i
            break
        at = rng.randrange(size)
        out.records.append(Record(r.anchor, join_sentences(fill[:at] + [r.positive] + fill[at:])))
    unused = len(positive) - len(chosen)
    if unused:
        out.skipped["positive pairs not made into passages (records limit or filler supply)"] += unused
    return out
