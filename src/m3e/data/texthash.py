"""One 64-bit fingerprint per text, stored with every training record: the no-duplicate-in-a-batch rule and the
test-overlap filter compare these numbers instead of strings, so they run on arrays at any data size.

Texts are compared after :func:`norm` (whitespace, letter case and punctuation at either end), so "求这张图片的
情侣头像" and "求这张图片的情侣头像。" are the same text for both rules. 0 means "no text" in hash matrices.
"""

from __future__ import annotations

import hashlib

import numpy as np

_EDGE = "。！？!?.…，,；;：:、~～ \t\n"


def norm(text: str) -> str:
    return " ".join(text.split()).casefold().strip(_EDGE)


def text_hash(text: str) -> int:
    """A stable 64-bit hash of the normalized text (never 0)."""
    h = int.from_bytes(hashlib.blake2b(norm(text).encode("utf-8"), digest_size=8).digest(), "little")
    return h or 1


def hash_texts(texts) -> np.ndarray:
    return np.fromiter((text_hash(t) for t in texts), dtype=np.uint64)
