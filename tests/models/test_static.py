"""Static models: our encoder against a naive reference (token ids -> mean of rows -> normalized), against
sentence-transformers and model2vec on the same folder, and through every path that takes a model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from m3e.errors import InputError
from tests.conftest import SAMPLE

MIXED = ["今天天气很好", "The weather is nice today", "混合 text 与 English 123", "🙂🙂 表情", "？！。",
         "\u200b", "长" * 5000, "a", "Beijing 北京 2024年"]


@pytest.fixture(scope="module")
def static_dir(tiny_static_dir):
    return tiny_static_dir


def naive(folder, texts):
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    rows = load_file(str(folder / "model.safetensors"))["embeddings"]
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    out = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        v = rows[ids].mean(axis=0) if ids else np.zeros(rows.shape[1], dtype=np.float32)
        n = np.linalg.norm(v)
        out.append(v / n if n > 0 else v)
    return np.array(out, dtype=np.float32)


def test_static_equals_naive_reference(static_dir):
    from m3e import load_model

    model = load_model(str(static_dir), device="cpu")
    assert type(model).__name__ == "StaticEmbedder" and model.dim == 12
    texts = MIXED + SAMPLE
    np.testing.assert_allclose(model.encode(texts), naive(static_dir, texts), atol=5e-5)  # 5,000-token sums
    assert model.last_stats.truncated == []  # no length limit: nothing is cut
    # the server's path: prepare + embed_units + combine, and windows change nothing for a mean
    prepared = model.prepare(texts, truncate="window", max_length=7)
    pooled = model.embed_units(prepared.units)
    np.testing.assert_allclose(model.combine(prepared, pooled), naive(static_dir, texts), atol=5e-5)


def test_static_chunks_never_change_vectors(static_dir, monkeypatch):
    import m3e.models.static as static
    from m3e import load_model

    model = load_model(str(static_dir), device="cpu")
    ref = model.encode(MIXED)
    monkeypatch.setattr(static, "CHUNK_TOKENS", 3)
    np.testing.assert_allclose(model.encode(MIXED), ref, atol=5e-5)


def test_static_loads_alike_in_sentence_transformers_and_model2vec(static_dir, tmp_path):
    from model2vec import StaticModel
    from sentence_transformers import SentenceTransformer

    from m3e import load_model

    ours = load_model(str(static_dir), device="cpu")
    texts = [t for t in MIXED if t != "\u200b"] + SAMPLE
    want = ours.encode(texts)
    np.testing.assert_allclose(SentenceTransformer(str(static_dir), device="cpu").encode(texts), want, atol=5e-5)
    # model2vec drops the unknown token before averaging; sentence-transformers (and m3e) average its row in.
    unk = ours.tokenizer.token_to_id("[UNK]")
    known = [i for i, t in enumerate(texts) if unk not in ours.tokenize([t])[0]]
    assert 0 < len(known) < len(texts)
    m2v = StaticModel.from_pretrained(str(static_dir)).encode(texts, max_length=None)
    np.testing.assert_allclose(m2v[known], want[known], atol=5e-5)
    saved = ours.save(tmp_path / "saved")  # m3e's save: plain sentence-transformers again, same vectors
    np.testing.assert_allclose(SentenceTransformer(str(saved), device="cpu").encode(texts), want, atol=5e-5)
    np.testing.assert_allclose(load_model(str(saved)).encode(texts), want, atol=1e-6)


def test_static_prompts_are_the_familys_names_and_add_nothing(static_dir):
    from m3e import load_model

    model = load_model(str(static_dir), device="cpu")
    assert {"query", "passage"} <= set(model.prompts) and set(model.prompts.values()) == {""}
    np.testing.assert_allclose(model.encode(SAMPLE, prompt_name="query"), model.encode(SAMPLE), atol=0)
    with pytest.raises(InputError, match="no prompt named 'qurey'"):
        model.encode(SAMPLE, prompt_name="qurey")


def test_static_refuses_onnx_backends_clearly(static_dir):
    from m3e import load_model

    with pytest.raises(InputError, match="static model.*--backend onnx-int8 does not apply"):
        load_model(str(static_dir), backend="onnx-int8")


def test_int8_rows_round_trip_within_half_a_step():
    from m3e.distill.pack import dequantize_rows, quantize_rows

    rows = np.random.default_rng(1).normal(size=(50, 16)).astype(np.float32)
    rows[3] = 0  # an all-zero row keeps a usable scale
    q, scales = quantize_rows(rows)
    assert q.dtype == np.int8 and np.abs(q).max() <= 127
    back = dequantize_rows(q, scales)
    assert np.all(np.abs(back - rows) <= scales[:, None] / 2 + 1e-7)
    np.testing.assert_array_equal(back[3], 0)


def test_packed_files_round_trip_in_int8_and_float32(tmp_path):
    from m3e.distill.pack import read_packed, write_packed

    rows = np.random.default_rng(2).normal(size=(20, 8)).astype(np.float32)
    for kind in ("int8", "float32"):
        write_packed(tmp_path / kind, rows, '{"tok": 1}', {"dim": 8}, quantize=kind)
        back, tok, info = read_packed(tmp_path / kind)
        assert json.loads(tok) == {"tok": 1, "truncation": None, "padding": None}  # a whole text is read
        assert info == {"dim": 8} and back.dtype == np.float32
        np.testing.assert_allclose(back, rows, atol=0 if kind == "float32" else np.abs(rows).max() / 254 + 1e-7)
    assert (tmp_path / "int8" / "static.safetensors").stat().st_size < (tmp_path / "float32" / "static.safetensors"
                                                                         ).stat().st_size


@pytest.mark.builtin
def test_builtin_static_model(m3e_home):
    """The shipped m3e-static-zh: unpacked on first use, equal to sentence-transformers, fast path included."""
    from sentence_transformers import SentenceTransformer

    from m3e import load_model
    from m3e.models.builtin import BUILTINS

    model = load_model("m3e-static-zh")
    folder = BUILTINS["m3e-static-zh"].folder
    texts = [t for t in MIXED if t != "\u200b"]
    np.testing.assert_allclose(model.encode(texts), naive(folder, texts), atol=1e-6)
    np.testing.assert_allclose(SentenceTransformer(str(folder), device="cpu").encode(texts), model.encode(texts),
                               atol=1e-6)
    a, b, c = model.encode(["花呗怎么还款", "蚂蚁花呗如何还钱", "今天天气很好"])
    assert a @ b > a @ c


@pytest.mark.builtin
def test_builtin_static_keeps_every_cjk_character_the_teacher_knows(builtin_model):
    """No CJK character that the teacher's tokenizer knows falls to the static model's unknown token."""
    from m3e import load_model

    static = load_model("m3e-static-zh")
    chars = [chr(c) for c in range(0x4E00, 0xA000)]
    teacher = builtin_model.tokenizer
    known = [c for c, e in zip(chars, teacher.backend_tokenizer.encode_batch(chars, add_special_tokens=False),
                               strict=True) if teacher.unk_token_id not in e.ids]
    unk = static.tokenizer.token_to_id("<unk>")
    lost = [c for c, e in zip(known, static.tokenizer.encode_batch(known, add_special_tokens=False), strict=True)
            if unk in e.ids]
    assert len(known) > 7_000 and lost == []  # the teacher's XLM-R vocabulary holds 7,688 of the 20,992
