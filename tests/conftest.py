"""Shared fixtures: tiny random models built on the spot (no network), and the built-in model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SAMPLE = [
    "今天天气很好", "今天阳光明媚", "我喜欢吃苹果", "他在北京工作", "这部电影很好看", "机器学习很有趣",
    "The weather is nice today", "I like apples", "He works in Beijing", "This movie is great",
    "query: 你好", "passage: 文本嵌入", "长文本" * 40,
]


def _vocab() -> list[str]:
    chars = sorted({ch for text in SAMPLE for ch in text if not ch.isspace()})
    words = sorted({w.lower() for text in SAMPLE for w in text.split() if w.isascii()})
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *("##" + c for c in chars)]


def build_tiny_hf_model(folder: Path, max_positions: int = 64, seed: int = 0, segments: bool = False) -> Path:
    """A 2-layer BERT with a WordPiece tokenizer, saved as a plain Hugging Face folder (safetensors).
    ``segments``: the tokenizer gives a pair's second text token type 1 and the model takes token types."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(_vocab())}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1" if segments else "[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=max_positions,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"] if segments
                                   else ["input_ids", "attention_mask"])
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=max_positions, pad_token_id=0)
    BertModel(config).eval().save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    return folder


def build_tiny_st_model(folder: Path, hf_folder: Path, prompts: dict | None = None) -> Path:
    from sentence_transformers import SentenceTransformer, models

    word = models.Transformer(str(hf_folder))
    pooling = models.Pooling(32, pooling_mode="mean")
    st = SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu",
                             prompts=prompts or {"query": "query: ", "passage": "passage: "})
    st.save(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    return build_tiny_hf_model(tmp_path_factory.mktemp("tiny_hf"))


@pytest.fixture(scope="session")
def tiny_st_dir(tmp_path_factory, tiny_hf_dir) -> Path:
    return build_tiny_st_model(tmp_path_factory.mktemp("tiny_st") / "model", tiny_hf_dir)


def build_tiny_static_model(folder: Path, hf_folder: Path, dim: int = 12, seed: int = 0) -> Path:
    """A static model (model2vec layout, a sentence-transformers folder too) over the tiny tokenizer, random rows."""
    import numpy as np
    from transformers import AutoTokenizer

    from m3e.distill.pack import write_model

    tok = AutoTokenizer.from_pretrained(str(hf_folder))
    rows = np.random.default_rng(seed).normal(size=(len(tok), dim)).astype(np.float32)
    return write_model(folder, rows, tok.backend_tokenizer.to_str())


@pytest.fixture(scope="session")
def tiny_static_dir(tmp_path_factory, tiny_hf_dir) -> Path:
    return build_tiny_static_model(tmp_path_factory.mktemp("tiny_static") / "model", tiny_hf_dir)


def build_tiny_cross_encoder(folder: Path, hf_folder: Path, seed: int = 0) -> Path:
    """A sentence-transformers CrossEncoder (one label) over the tiny BERT; its head is scaled so that scores
    spread over (0, 1) instead of all sitting at 0.5."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(seed)
    ce = CrossEncoder(str(hf_folder), num_labels=1, device="cpu")
    hf = ce[0].model
    pairs = [(a, b) for a in SAMPLE[:6] for b in SAMPLE[6:12]]
    with torch.no_grad():  # point the head along the pooled outputs' main direction of variation: logits std 2
        enc = ce.tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt")
        pooled = hf.bert(**enc).pooler_output
        centered = pooled - pooled.mean(0)
        direction = torch.linalg.svd(centered, full_matrices=False).Vh[0]
        scale = 2.0 / float((centered @ direction).std())
        hf.classifier.weight.copy_(direction[None] * scale)
        hf.classifier.bias.fill_(-float(pooled.mean(0) @ direction) * scale)
    ce.save(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory) -> Path:
    hf = build_tiny_hf_model(tmp_path_factory.mktemp("tiny_hf_pairs"), max_positions=48, seed=1, segments=True)
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny_ce") / "model", hf)


@pytest.fixture(scope="session")
def tiny_reranker(tiny_reranker_dir):
    from m3e import load_reranker

    return load_reranker(str(tiny_reranker_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_model(tiny_st_dir):
    from m3e import load_model

    return load_model(str(tiny_st_dir), device="cpu")


@pytest.fixture(scope="session")
def m3e_home(tmp_path_factory) -> Path:
    """One m3e cache for the whole run, so the built-in model is converted once.

    Reuses ``$M3E_TEST_HOME`` when set (handy locally); otherwise a fresh temporary folder.
    """
    home = Path(os.environ.get("M3E_TEST_HOME") or tmp_path_factory.mktemp("m3e_home"))
    home.mkdir(parents=True, exist_ok=True)
    return home


@pytest.fixture(autouse=True)
def _isolated_home(m3e_home, monkeypatch):
    monkeypatch.setenv("M3E_HOME", str(m3e_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("M3E_MODEL", raising=False)


@pytest.fixture(scope="session")
def builtin_model(m3e_home):
    os.environ["M3E_HOME"] = str(m3e_home)
    from m3e import load_model

    return load_model("multilingual-e5-small-q4", device="cpu")


def data_dir() -> Path | None:
    """``$M3E_DATA_DIR``, else ../shared/data beside the repository."""
    env = os.environ.get("M3E_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    found = data_dir()
    if found is None:
        pytest.skip("evaluation data not found: set M3E_DATA_DIR or place it at ../shared/data")
    return found


def have_cc() -> bool:
    return shutil.which("cc") is not None or shutil.which("gcc") is not None
