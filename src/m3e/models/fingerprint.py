"""A short fingerprint of what a model computes: caches and resumable jobs key their vectors by it.

It hashes the model's name, dimension, max length, device type, backend and the vector it gives a fixed probe
sentence, so a fine-tuned model under an old name never reuses the old model's vectors.
"""

from __future__ import annotations

import hashlib

import numpy as np

PROBE = "M3E 缓存指纹：用于区分模型的固定句子。"


def model_fingerprint(embedder) -> str:
    vec = np.asarray(embedder.encode([PROBE]), dtype=np.float32)[0]
    h = hashlib.sha256()
    device = str(getattr(embedder, "device", "cpu")).split(":")[0]
    backend = getattr(embedder, "backend", "torch")
    h.update(f"{embedder.name}|{embedder.dim}|{embedder.max_length}|{device}|{backend}".encode())
    h.update(np.round(vec, 4).tobytes())
    return h.hexdigest()[:16]
