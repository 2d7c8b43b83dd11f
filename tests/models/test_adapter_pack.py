"""A tuned model packed as a LoRA adapter on its base rebuilds the same vectors (the shipping path of m3e models)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from m3e.errors import SourceMismatchError
from m3e.models.adapters import adapter_from_difference, merge_adapter

TEXTS = ["今天天气很好", "I like apples", "机器学习 machine learning"]


def _tuned(src, dst, rank: int, touch_norm: bool = False):
    from sentence_transformers import SentenceTransformer

    shutil.copytree(src, dst)
    st = SentenceTransformer(str(dst), device="cpu")
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, m in st[0].auto_model.named_modules():
            if isinstance(m, torch.nn.Linear) and ("query" in name or "dense" in name):
                out_f, in_f = m.weight.shape
                m.weight += 0.2 * torch.randn(out_f, rank, generator=gen) @ torch.randn(rank, in_f, generator=gen)
            if touch_norm and isinstance(m, torch.nn.LayerNorm):
                m.weight += 0.1
    st.save(str(dst))
    return st


def test_packed_adapter_rebuilds_the_tuned_model(tiny_st_dir, tmp_path):
    pytest.importorskip("peft")
    tuned = _tuned(tiny_st_dir, tmp_path / "tuned", rank=2)
    errors = adapter_from_difference(tiny_st_dir, tmp_path / "tuned", tmp_path / "adapter", rank=2)
    assert errors and max(errors.values()) < 1e-5  # rank-2 changes, rank-2 adapter: exact
    merged = merge_adapter(tiny_st_dir, tmp_path / "adapter", tmp_path / "merged", name="m", version=1)
    from sentence_transformers import SentenceTransformer

    a = tuned.encode(TEXTS, normalize_embeddings=True)
    b = SentenceTransformer(str(merged), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(a, b, atol=1e-5)
    lossy = adapter_from_difference(tiny_st_dir, tmp_path / "tuned", tmp_path / "adapter1", rank=1)
    assert min(lossy.values()) > 1e-3  # a smaller rank says what it lost


def test_changes_an_adapter_cannot_carry_are_refused(tiny_st_dir, tmp_path):
    _tuned(tiny_st_dir, tmp_path / "tuned", rank=1, touch_norm=True)
    with pytest.raises(SourceMismatchError, match="LayerNorm|changed, which a LoRA adapter cannot carry"):
        adapter_from_difference(tiny_st_dir, tmp_path / "tuned", tmp_path / "adapter", rank=1)
    with pytest.raises(SourceMismatchError, match="nothing to pack"):
        adapter_from_difference(tiny_st_dir, tiny_st_dir, tmp_path / "adapter2", rank=1)


def test_packed_files_honour_the_umask(tiny_st_dir, tmp_path):
    import os

    _tuned(tiny_st_dir, tmp_path / "tuned", rank=1)
    old = os.umask(0o022)
    try:
        adapter_from_difference(tiny_st_dir, tmp_path / "tuned", tmp_path / "adapter", rank=1)
    finally:
        os.umask(old)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "adapter").stat().st_mode & 0o777 == 0o755
