"""Chunking: every character kept, sizes and overlaps respected, cuts at sentence ends."""

from __future__ import annotations

import random

import pytest

from m3e.errors import InputError
from m3e.search.chunking import chunk_text, sentence_spans

PIECES = ["长江是中国最长的河流。", "它全长约六千三百公里！", "你去过吗？", "价格是3.14元；", "真的吗…",
          "This is an English sentence. ", "Is it? ", "Yes! ", "e.g. the value 2.5 stays whole. ", "\n\n",
          "“引号里的话。”", "没有标点的很长很长很长的一段文字" * 3]


def random_text(seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 60)))


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize(("size", "overlap"), [(40, 10), (100, 30), (17, 0)])
def test_chunks_cover_the_text_within_size_and_overlap(seed, size, overlap):
    text = random_text(seed)
    chunks = chunk_text(text, size, overlap)
    covered = [False] * len(text)
    prev_end = None
    for c in chunks:
        assert c.text == text[c.start:c.end] and c.text == c.text.strip() and c.text
        assert len(c.text) <= size
        if prev_end is not None:
            assert c.start > prev_start  # always moves forward  # noqa: F821
            assert prev_end - c.start <= overlap  # never repeats more than the overlap
        prev_start, prev_end = c.start, c.end  # noqa: F841
        for i in range(c.start, c.end):
            covered[i] = True
    missing = [text[i] for i in range(len(text)) if not covered[i] and not text[i].isspace()]
    assert missing == []


def test_cuts_after_sentence_ends_and_keeps_decimals():
    text = "第一句话。第二句话！Third one. The price is 3.14 dollars? 第五句；"
    spans = [text[s:e] for s, e in sentence_spans(text)]
    assert spans == ["第一句话。", "第二句话！", "Third one.", " The price is 3.14 dollars?", " 第五句；"]
    chunks = chunk_text(text, 12, 0)
    assert [c.text for c in chunks][:2] == ["第一句话。第二句话！", "Third one."]


def test_overlap_repeats_whole_sentences():
    text = "甲甲甲。乙乙乙。丙丙丙。丁丁丁。"
    chunks = chunk_text(text, 8, 4)
    assert [c.text for c in chunks] == ["甲甲甲。乙乙乙。", "乙乙乙。丙丙丙。", "丙丙丙。丁丁丁。"]


def test_long_sentence_is_cut_preferably_at_a_comma():
    text = "这是一个很长的句子，" + "没有标点" * 10 + "。"
    chunks = chunk_text(text, 20, 0)
    assert chunks[0].text == "这是一个很长的句子，"
    assert all(len(c.text) <= 20 for c in chunks)


def test_whole_documents_and_bad_sizes():
    assert [c.text for c in chunk_text("  整篇文档。第二句。 ", 0, 0)] == ["整篇文档。第二句。"]
    assert chunk_text("   ", 10, 2) == []
    with pytest.raises(InputError, match="overlap"):
        chunk_text("x", 10, 10)
    with pytest.raises(InputError, match="negative"):
        chunk_text("x", -1, 0)
