"""The encoder against sentence-transformers' own encode (the library we build on) and naive references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m3e.errors import InputError
from tests.conftest import SAMPLE


def test_matches_sentence_transformers_encode(tiny_model):
    ours = tiny_model.encode(SAMPLE)
    ref = tiny_model.model.encode(SAMPLE, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("batch_size", "budget"), [(1, 10_000), (3, 10_000), (64, 40), (64, 100_000)])
def test_batching_never_changes_vectors_or_order(tiny_model, batch_size, budget):
    ref = tiny_model.model.encode(SAMPLE, normalize_embeddings=True)
    ours = tiny_model.encode(SAMPLE, batch_size=batch_size, max_batch_tokens=budget)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    stats = tiny_model.last_stats
    assert stats.batches >= -(-len(SAMPLE) // batch_size)


def test_token_budget_bounds_padded_batch(tiny_model):
    """Every batch's padded size (rows x longest) stays within the budget unless one row alone exceeds it."""
    seen = []
    original = tiny_model._forward

    def spy(features):
        seen.append(tuple(features["input_ids"].shape))
        return original(features)

    tiny_model._forward = spy
    try:
        tiny_model.encode(SAMPLE, max_batch_tokens=30)
    finally:
        tiny_model._forward = original
    assert sum(r for r, _ in seen) == len(SAMPLE)
    assert all(r * w <= 30 or r == 1 for r, w in seen)


def test_prompts_by_name_and_literal(tiny_model):
    named = tiny_model.encode(["你好"], prompt_name="query")
    literal = tiny_model.encode(["query: 你好"])
    ref = tiny_model.model.encode(["你好"], prompt_name="query", normalize_embeddings=True)
    np.testing.assert_allclose(named, literal, atol=1e-6)
    np.testing.assert_allclose(named, ref, atol=1e-5)
    with pytest.raises(InputError, match="no prompt named 'nope'.*passage, query"):
        tiny_model.encode(["x"], prompt_name="nope")


def test_one_prompt_rule(tiny_model):
    """Role prompts follow the model; training instructions are names or literal text, never a mistyped name."""
    from m3e.models.encoding import prompt_text, role_prompt

    assert role_prompt(tiny_model, "query") == "query" and role_prompt(tiny_model, "passage") == "passage"
    assert prompt_text(tiny_model, "query") == tiny_model.prompts["query"]
    assert prompt_text(tiny_model, "Represent this sentence: ") == "Represent this sentence: "
    assert prompt_text(tiny_model, "为这个句子生成表示：") == "为这个句子生成表示："
    assert prompt_text(tiny_model, None) == ""
    with pytest.raises(InputError, match="no prompt named 'qurey'.*passage, query"):
        prompt_text(tiny_model, "qurey")


def test_single_string_returns_vector(tiny_model):
    assert tiny_model.encode("你好").shape == (tiny_model.dim,)


@pytest.mark.parametrize(("bad", "message"), [
    ([None], "item 0 is None"),
    (["ok", 3], "item 1 is int"),
    (["ok", "  "], "item 1 is an empty string"),
    (123, "must be a string or a list"),
])
def test_bad_texts_name_the_item(tiny_model, bad, message):
    with pytest.raises(InputError, match=message):
        tiny_model.encode(bad)


def test_truncation_is_counted_and_matches_sentence_transformers(tiny_model):
    long = "长文本" * 40  # > 64 tokens in the tiny model
    vec = tiny_model.encode(["短", long])
    assert tiny_model.last_stats.truncated == [1]
    ref = tiny_model.model.encode(["短", long], normalize_embeddings=True)
    np.testing.assert_allclose(vec, ref, atol=1e-5)
    with pytest.raises(InputError, match="item 1 has .* tokens, more than the model's limit of 64"):
        tiny_model.encode(["短", long], truncate="error")


def test_window_mode_equals_naive_window_average(tiny_model):
    text = "机器学习很有趣" * 30
    got = tiny_model.encode([text], truncate="window")[0]
    ids = tiny_model.tokenize([text])[0]
    room = tiny_model.max_length - 2
    st = tiny_model.model
    sums, weight = torch.zeros(tiny_model.dim), 0
    for s in range(0, len(ids), room):
        window = ids[s : s + room]
        full = tiny_model._prefix + window + tiny_model._suffix
        with torch.no_grad():
            out = st[0]({"input_ids": torch.tensor([full]), "attention_mask": torch.ones(1, len(full))})
        mean = out["token_embeddings"][0].mean(0)  # mean pooling, no padding here
        sums += mean * len(window)
        weight += len(window)
    ref = torch.nn.functional.normalize(sums / weight, dim=0).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert tiny_model.last_stats.windows == -(-len(ids) // room)
    assert tiny_model.last_stats.truncated == []


def test_unnormalized_output(tiny_model):
    raw = tiny_model.encode(SAMPLE[:4], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True),
                               tiny_model.encode(SAMPLE[:4]), atol=1e-5)


def test_count_tokens(tiny_model):
    counts = tiny_model.count_tokens(["你好", "今天天气很好"])
    ref = [len(tiny_model.tokenizer(t)["input_ids"]) for t in ["你好", "今天天气很好"]]
    assert counts == ref


def test_saved_folder_loads_in_plain_sentence_transformers(tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    out = tiny_model.save(tmp_path / "saved")
    plain = SentenceTransformer(str(out), device="cpu")
    assert plain.prompts["query"] == "query: "
    np.testing.assert_allclose(plain.encode(SAMPLE, prompt_name="query"),
                               tiny_model.encode(SAMPLE, prompt_name="query"), atol=1e-5)
    with pytest.raises(InputError, match="not empty"):
        tiny_model.save(out)
