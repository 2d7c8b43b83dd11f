"""m3e-small-zh: the shipped LoRA difference merged onto the built-in base equals base + adapter unmerged."""

from __future__ import annotations

import numpy as np
import pytest

from m3e.models.builtin import WEIGHTS


def test_shipped_adapter_is_small():
    size = sum(p.stat().st_size for p in (WEIGHTS / "m3e_small_zh").iterdir())
    assert size <= 10 * 1024 * 1024


def test_m3e_small_zh_equals_base_plus_adapter(builtin_model):
    pytest.importorskip("peft")
    from peft import PeftModel
    from sentence_transformers import SentenceTransformer

    from m3e import load_model

    merged = load_model("m3e-small-zh", device="cpu")
    texts = ["花呗怎么还款", "蚂蚁花呗如何还钱", "The weather is nice today"]
    base = SentenceTransformer(str(_folder("multilingual-e5-small-q4")), device="cpu")
    base[0].model = PeftModel.from_pretrained(base[0].auto_model, str(WEIGHTS / "m3e_small_zh"))
    ref = base.encode(texts, prompt_name="query", normalize_embeddings=True)
    np.testing.assert_allclose(merged.encode(texts, prompt_name="query"), ref, atol=1e-5)
    plain = SentenceTransformer(str(_folder("m3e-small-zh")), device="cpu")
    np.testing.assert_allclose(plain.encode(texts, prompt_name="query", normalize_embeddings=True), ref, atol=1e-5)


def _folder(name):
    from m3e.models.builtin import BUILTINS

    return BUILTINS[name].ensure()
