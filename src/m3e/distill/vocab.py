"""A static model's vocabulary: the teacher's own tokens, pruned to what a Chinese + English corpus uses.

Kept: every token the teacher's tokenizer produces on the corpus; every single-character token of the scripts
m3e serves (CJK ideographs, CJK and full-width punctuation, ASCII letters, digits and symbols), so no such
character of any later text falls to the unknown token; the ``extra_latin`` most probable ASCII tokens by the
tokenizer's own scores (English words the corpus lacks); and the special tokens.

Pruning a Unigram (SentencePiece) vocabulary keeps the tokenization of every corpus text unchanged: the pieces of
its best segmentation all survive, so it stays the best. skeletoken removes the tokens and re-indexes the teacher's
embedding rows, so the pruned teacher gives the same vectors on covered text (it is what model2vec distils).
"""

from __future__ import annotations

from collections import Counter

from m3e.errors import InputError

# Scripts whose every single character stays in the vocabulary.
_RANGES = [
    (0x20, 0x7E),  # ASCII
    (0x2000, 0x206F),  # general punctuation
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF00, 0xFFEF),  # full-width forms
    (0x20000, 0x2FFFF),  # CJK extensions B-F
]
_PREFIX = "\u2581"  # SentencePiece's word-start mark


def kept_char(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _RANGES)


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FFFF


def scored_vocab(tokenizer) -> dict[int, tuple[str, float]]:
    """id -> (token, score): a Unigram model's log-probabilities; 0 for other models (ids may have gaps)."""
    import json

    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model.get("type") == "Unigram":
        return {i: (piece, float(score)) for i, (piece, score) in enumerate(model["vocab"])}
    return {i: (tok, 0.0) for tok, i in tokenizer.get_vocab().items()}


def choose_tokens(tokenizer, texts: list[str], extra_latin: int = 0, min_count: int = 1) -> tuple[list[str], dict]:
    """The token strings to keep, in the teacher's id order, and counts of why each group was kept."""
    backend = tokenizer.backend_tokenizer
    counts: Counter = Counter()
    for start in range(0, len(texts), 8192):
        for enc in backend.encode_batch_fast(texts[start:start + 8192], add_special_tokens=False):
            counts.update(enc.ids)
    vocab = scored_vocab(tokenizer)
    special = set(tokenizer.all_special_tokens)
    keep: dict[int, str] = {}
    for i, (piece, _) in vocab.items():
        if piece in special:
            keep[i] = "special"
    for i, n in counts.items():
        if n >= min_count and i not in keep:
            keep[i] = "corpus"
    for i, (piece, _) in vocab.items():
        bare = piece[1:] if piece.startswith(_PREFIX) else piece
        if i not in keep and len(bare) == 1 and kept_char(bare):
            keep[i] = "single character"
    if extra_latin:
        latin = sorted(((score, i) for i, (piece, score) in vocab.items()
                        if i not in keep and piece.strip(_PREFIX) and piece.strip(_PREFIX).isascii()), reverse=True)
        for _, i in latin[:extra_latin]:
            keep[i] = "extra latin"
    ids = sorted(keep)
    if not ids:
        raise InputError("the corpus gave no tokens to keep")
    return [vocab[i][0] for i in ids], dict(Counter(keep.values()))


def prune_teacher(hf_model, tokenizer, keep: list[str]):
    """(model, tokenizer) holding only ``keep``'s tokens, rows re-indexed; vectors unchanged on covered text."""
    import logging

    from skeletoken import TokenizerModel
    from skeletoken.external.transformers import reshape_embeddings

    logging.getLogger("skeletoken").setLevel(logging.ERROR)  # "Setting pad token" notices
    model = TokenizerModel.from_transformers_tokenizer(tokenizer)
    wanted = set(keep)
    model = model.remove_tokens_from_vocabulary([t for t in model.vocabulary if t not in wanted])
    return reshape_embeddings(hf_model, model), model.to_transformers()
