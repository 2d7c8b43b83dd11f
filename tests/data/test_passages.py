"""Pseudo-passages from sentence pairs: every query's positive sits in its own passage, fillers are never the
text of another query (no false in-batch negatives), counts of what was not used are reported."""

from __future__ import annotations

import pytest

from m3e.data.passages import join_sentences, to_passages
from m3e.data.records import Record, Source
from m3e.errors import InputError


def _scored(n: int) -> Source:
    return Source("s", "scored", [Record(f"问句{i}", f"答句{i}", score=float(i % 2)) for i in range(n)])


def test_each_passage_holds_its_positive_and_no_other_query_text():
    src = _scored(200)
    out = to_passages(src, size=5, records=15, seed=3)
    assert out.kind == "pair" and len(out.records) == 15 and out.doc_instruction == "passage"
    queries = {t for r in out.records for t in (r.anchor, f"答句{r.anchor[2:]}")}
    for r in out.records:
        i = r.anchor[2:]
        assert int(i) % 2 == 1  # only positive pairs (score >= 1) become queries
        parts = r.positive.rstrip("。").split("。")
        assert len(parts) == 5 and f"答句{i}" in parts
        assert not (set(parts) - {f"答句{i}"}) & queries  # fillers are not any query's texts
    fillers = [p for r in out.records for p in r.positive.rstrip("。").split("。") if p not in queries]
    assert len(fillers) == len(set(fillers))  # each filler used once
    assert out.skipped["positive pairs not made into passages (records limit or filler supply)"] == 100 - 15


def test_filler_supply_limits_the_count():
    out = to_passages(_scored(20), size=10)  # 40 texts -> at most 40 // 11 = 3 passages
    assert len(out.records) == 3


def test_join_keeps_punctuation_and_spaces_latin():
    assert join_sentences(["你好", "天气不错！", "ok"]) == "你好。天气不错！ ok."
    assert join_sentences(["A cat.", "狗"]) == "A cat. 狗。"


def test_bad_options():
    with pytest.raises(InputError, match="size >= 2"):
        to_passages(_scored(10), size=1)
    only_zero = Source("z", "scored", [Record("a", "b", score=0.0), Record("c", "d", score=0.5)])
    with pytest.raises(InputError, match="min_score"):
        to_passages(only_zero)
