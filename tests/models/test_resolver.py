"""One resolver for every command: local folders, plain transformer folders, hub ids, built-ins."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from m3e.errors import ModelNotFoundError
from m3e.models import load_model, resolve
from m3e.models.builtin import DEFAULT_MODEL


def test_sentence_transformers_folder(tiny_st_dir):
    r = resolve(str(tiny_st_dir))
    assert r.kind == "sentence-transformers" and r.path == tiny_st_dir.resolve()


def test_plain_transformers_folder_gets_mean_pooling(tiny_hf_dir):
    from transformers import AutoModel, AutoTokenizer

    emb = load_model(str(tiny_hf_dir), device="cpu")
    assert resolve(str(tiny_hf_dir)).kind == "transformers"
    texts = ["今天天气很好", "I like apples"]
    got = emb.encode(texts)
    tok = AutoTokenizer.from_pretrained(tiny_hf_dir)
    model = AutoModel.from_pretrained(tiny_hf_dir).eval()
    for text, vec in zip(texts, got, strict=True):
        with torch.no_grad():
            hidden = model(**tok(text, return_tensors="pt")).last_hidden_state[0]
        ref = torch.nn.functional.normalize(hidden.mean(0), dim=0).numpy()
        np.testing.assert_allclose(vec, ref, atol=1e-5)


def test_pickle_only_weights_are_refused(tiny_hf_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_hf_dir, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelNotFoundError, match="safetensors only, never pickled"):
        resolve(str(folder))


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither a sentence-transformers folder"):
        resolve(str(tmp_path))


def test_missing_local_path():
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve("./no/such/model")


def test_unknown_name_lists_builtins():
    with pytest.raises(ModelNotFoundError, match=f"Unknown model 'what'.*{DEFAULT_MODEL}"):
        resolve("what")


def test_hub_id_not_cached_offline_says_how_to_fix():
    with pytest.raises(ModelNotFoundError) as info:
        resolve("moka-ai/m3e-base")
    message = str(info.value)
    assert "not in the Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    assert "huggingface-cli download moka-ai/m3e-base" in message


def test_hub_id_resolves_from_cache(tiny_st_dir, tmp_path, monkeypatch):
    """A model in the standard HF cache layout resolves offline, as a downloaded one would."""
    cache = tmp_path / "hub"
    snap = cache / "models--moka-ai--m3e-base" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_st_dir, snap)
    (cache / "models--moka-ai--m3e-base" / "refs").mkdir()
    (cache / "models--moka-ai--m3e-base" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    r = resolve("moka-ai/m3e-base")
    assert r.path == snap and r.kind == "sentence-transformers"


def test_env_overrides_default(monkeypatch, tiny_st_dir):
    from m3e.models.resolver import default_model_name

    assert default_model_name() == DEFAULT_MODEL
    monkeypatch.setenv("M3E_MODEL", str(tiny_st_dir))
    assert resolve(None).path == tiny_st_dir.resolve()
