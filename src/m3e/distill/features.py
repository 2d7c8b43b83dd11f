"""The teacher's vectors of the corpus: what tokenlearn fits the static model to, and what validation compares with.

Written in shards of ``SHARD`` texts, each atomically and named by a hash of the teacher and of the shard's own
texts and roles (``vectors-00003-<hash>.npy``): a killed run keeps every finished shard and ``--resume`` goes on
from the first missing one, and a corpus that grows at its end (more sources, sentence splits) reuses every shard
whose texts did not change. A folder made for another teacher is refused, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from m3e.errors import InputError

SHARD = 8192


def shard_name(key: dict, k: int, texts: list[str], roles: list[str]) -> str:
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for text, role in zip(texts, roles, strict=True):
        h.update(f"{role}\x00{text}\x01".encode())
    return f"vectors-{k:05d}-{h.hexdigest()[:16]}.npy"


def teacher_vectors(embedder, texts: list[str], roles: list[str], folder: Path, key: dict,
                    log: Callable[[str], None] = print) -> np.ndarray:
    """(len(texts), dim) float32 vectors of ``texts`` under each one's role prompt, cached in ``folder``."""
    from m3e.models.encoding import named_prompt, role_prompt
    from m3e.utils.atomic import atomic_path, write_text

    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    key = {**key, "shard": SHARD}
    if manifest.is_file():
        found = json.loads(manifest.read_text())
        if found != key:
            raise InputError(f"{folder} holds the vectors of another teacher ({found}); remove it or use another "
                             "output folder")
    else:
        write_text(manifest, json.dumps(key, indent=2))
    prompts = {role: named_prompt(embedder, role_prompt(embedder, role)) for role in set(roles)}
    shards = (len(texts) + SHARD - 1) // SHARD
    names = [shard_name(key, k, texts[k * SHARD:(k + 1) * SHARD], roles[k * SHARD:(k + 1) * SHARD])
             for k in range(shards)]
    todo = [k for k in range(shards) if not (folder / names[k]).is_file()]
    if todo:
        log(f"  teacher vectors: {len(todo)} of {shards} shards to encode ({shards - len(todo)} cached)")
    started, done = time.perf_counter(), 0
    for k in todo:
        lo, hi = k * SHARD, min(len(texts), (k + 1) * SHARD)
        out = np.empty((hi - lo, embedder.dim), dtype=np.float32)
        for role, prompt in prompts.items():
            idx = [i for i in range(lo, hi) if roles[i] == role]
            if idx:
                out[np.asarray(idx) - lo] = embedder.encode([texts[i] for i in idx], prompt=prompt,
                                                            show_progress=False)
        with atomic_path(folder / names[k], suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, out)
        done += hi - lo
        rate = done / max(time.perf_counter() - started, 1e-9)
        left = sum(min(len(texts), (j + 1) * SHARD) - j * SHARD for j in todo if j > k)
        log(f"  teacher vectors: shard {k + 1}/{shards} ({rate:.0f} texts/s, {left / max(rate, 1e-9) / 60:.1f} min "
            "left)")
    if not shards:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.concatenate([np.load(folder / name) for name in names])
