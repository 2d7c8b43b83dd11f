"""A static model on disk: the folder every library loads, and the small int8 file m3e ships in its package.

The folder is model2vec's layout, which is also a sentence-transformers folder (``modules.json`` names a
``StaticEmbedding`` at the root and a ``Normalize``): ``model.safetensors`` holds ``embeddings`` (float32, one
row per token id, any token weights already folded in), beside ``tokenizer.json`` and ``config.json``. So the
same files load in ``SentenceTransformer(path)``, ``StaticModel.from_pretrained(path)`` and :func:`m3e.load_model`
with the same vectors.

The packed form stores each row as int8 with one float32 scale per row (symmetric, max-abs): a quarter of the
float32 size. The folder built from it holds exactly the dequantized rows, so what is measured is what ships.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PACKED = "static.safetensors"
PROMPTS = {"query": "", "passage": ""}  # the family's prompt names; a static model adds nothing for either


def quantize_rows(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(embeddings, dtype=np.float32)
    scales = np.abs(emb).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(emb / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales.astype(np.float32)


def dequantize_rows(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scales[:, None].astype(np.float32)


def no_limit_tokenizer(tokenizer_json: str) -> str:
    """The tokenizer without the teacher's truncation (512) and fixed padding: a static model reads a whole text,
    and sentence-transformers' StaticEmbedding (which applies tokenizer.json as it is) must read it alike."""
    data = json.loads(tokenizer_json)
    data["truncation"] = None
    data["padding"] = None
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def write_packed(folder: Path, embeddings: np.ndarray, tokenizer_json: str, config: dict,
                 quantize: str = "int8") -> Path:
    """The shipped files: rows as int8 + one scale per row (or as float32), the tokenizer, the model's facts."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if quantize == "int8":
        q, scales = quantize_rows(embeddings)
        save_file({"embeddings": q, "scales": scales}, str(folder / PACKED))
    elif quantize == "float32":
        save_file({"embeddings": np.ascontiguousarray(embeddings, dtype=np.float32)}, str(folder / PACKED))
    else:
        raise ValueError(f"quantize is int8 or float32, not {quantize!r}")
    (folder / "tokenizer.json").write_text(no_limit_tokenizer(tokenizer_json), encoding="utf-8")
    (folder / "static_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return folder


def read_packed(folder: Path) -> tuple[np.ndarray, str, dict]:
    from safetensors.numpy import load_file

    tensors = load_file(str(folder / PACKED))
    rows = tensors["embeddings"]
    return (dequantize_rows(rows, tensors["scales"]) if "scales" in tensors else rows.astype(np.float32),
            (folder / "tokenizer.json").read_text(encoding="utf-8"),
            json.loads((folder / "static_config.json").read_text(encoding="utf-8")))


def write_model(folder: Path, embeddings: np.ndarray, tokenizer_json: str, config: dict | None = None,
                card: str | None = None) -> Path:
    """Write the loadable folder (float32) into ``folder`` (which the caller makes atomic)."""
    from safetensors.numpy import save_file

    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": emb}, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text(no_limit_tokenizer(tokenizer_json), encoding="utf-8")
    cfg = {"model_type": "model2vec", "architectures": ["StaticModel"], "hidden_dim": int(emb.shape[1]),
           "seq_length": 1000000, "normalize": True, "embedding_dtype": "float32", **(config or {})}
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
    modules = [{"idx": 0, "name": "0", "path": ".", "type": "sentence_transformers.models.StaticEmbedding"},
               {"idx": 1, "name": "1", "path": "1_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    (folder / "1_Normalize").mkdir(exist_ok=True)
    (folder / "1_Normalize" / "config.json").write_text("{}", encoding="utf-8")
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine",
         "model_type": "SentenceTransformer"}, indent=2), encoding="utf-8")
    if card:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def folded_rows(static_model) -> np.ndarray:
    """A model2vec ``StaticModel``'s rows with its token weights and mapping folded in (what it averages)."""
    emb = np.asarray(static_model.embedding, dtype=np.float32)
    mapping = getattr(static_model, "token_mapping", None)
    if mapping is not None:
        emb = emb[np.asarray(mapping)]
    weights = getattr(static_model, "weights", None)
    if weights is not None:
        emb = emb * np.asarray(weights, dtype=np.float32)[:, None]
    return emb
