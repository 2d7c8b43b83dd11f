"""Embedding cache (reuse, model keying) and `eval compare` (table and PNG)."""

from __future__ import annotations

import numpy as np
import pytest

from m3e.errors import InputError
from m3e.evaluation.cache import EmbeddingCache
from m3e.evaluation.compare import compare
from m3e.evaluation.runner import EmbeddingMemo, evaluate
from m3e.evaluation.task_files import task_from_file


class Counting:
    """Wraps an embedder and counts the texts it really encodes."""

    def __init__(self, inner, name=None):
        self.inner, self.seen = inner, 0
        self.name = name or inner.name

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def encode(self, texts, **kw):
        self.seen += len(texts)
        return self.inner.encode(texts, **kw)


def test_cache_reuses_vectors_across_runs(tiny_model, tmp_path):
    texts = ["今天天气很好", "我喜欢吃苹果", "机器学习"]
    first = Counting(tiny_model)
    memo = EmbeddingMemo(first, EmbeddingCache(tmp_path, first))
    a = memo.encode(texts, "query")
    encoded_first = first.seen
    second = Counting(tiny_model)
    memo2 = EmbeddingMemo(second, EmbeddingCache(tmp_path, second))
    b = memo2.encode(texts + ["新句子"], "query")
    assert second.seen - 1 == 1  # only the probe sentence and the new text reach the model
    assert encoded_first == 1 + 3
    np.testing.assert_array_equal(a, b[:3])
    np.testing.assert_allclose(b, tiny_model.encode(texts + ["新句子"], prompt_name="query"), atol=1e-6)


def test_cache_is_keyed_by_model(tiny_model, builtin_model, tmp_path):
    a = EmbeddingCache(tmp_path, tiny_model)
    b = EmbeddingCache(tmp_path, builtin_model)
    assert a.path != b.path
    a.put("", ["x"], tiny_model.encode(["x"]))
    assert b.get("", ["x"]) == {}


def test_compare_table_and_png(tiny_model, tmp_path):
    f = tmp_path / "sts.jsonl"
    f.write_text("".join(f'{{"sentence1": "句子{i}", "sentence2": "句子{i % 3}", "score": {i % 4}}}\n'
                         for i in range(10)), encoding="utf-8")
    task = task_from_file(f)
    evaluate(tiny_model, [task], tmp_path, tmp_path / "out")
    evaluate(Counting(tiny_model, name="other-model"), [task], tmp_path, tmp_path / "out")
    table, png = compare(tmp_path / "out", tmp_path / "out" / "c.png")
    assert "| sts | STS | s2s | zh | cosine_spearman |" in table and "other-model" in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="no results for nope"):
        compare(tmp_path / "out", None, ["nope"])
    with pytest.raises(InputError, match="does not exist"):
        compare(tmp_path / "missing")
