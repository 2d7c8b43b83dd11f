"""The teacher's vectors of the corpus: what tokenlearn fits the static model to, and what validation compares with.

Written in shards of ``SHARD`` texts (``vectors-00000.npy`` ...), each atomically, beside a manifest naming the
teacher and the corpus fingerprint; a killed run keeps every finished shard and ``--resume`` goes on from the
first missing one. A manifest for another teacher or corpus is refused, never mixed in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from m3e.errors import InputError

SHARD = 8192


def _shard(folder: Path, k: int) -> Path:
    return folder / f"vectors-{k:05d}.npy"


def teacher_vectors(embedder, texts: list[str], roles: list[str], folder: Path, key: dict,
                    log: Callable[[str], None] = print) -> np.ndarray:
    """(len(texts), dim) float32 vectors of ``texts`` under each one's role prompt, cached in ``folder``."""
    from m3e.models.encoder import named_prompt
    from m3e.utils.atomic import atomic_path, write_text

    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    key = {**key, "texts": len(texts), "shard": SHARD}
    if manifest.is_file():
        found = json.loads(manifest.read_text())
        if found != key:
            raise InputError(f"{folder} holds teacher vectors of another corpus or teacher ({found}); remove it or "
                             "use another output folder")
    else:
        write_text(manifest, json.dumps(key, indent=2))
    prompts = {role: named_prompt(embedder, role, optional=True) for role in set(roles)}
    shards = (len(texts) + SHARD - 1) // SHARD
    started, done_before = time.perf_counter(), 0
    for k in range(shards):
        path = _shard(folder, k)
        if path.is_file():
            done_before += 1
            continue
        lo, hi = k * SHARD, min(len(texts), (k + 1) * SHARD)
        out = np.empty((hi - lo, embedder.dim), dtype=np.float32)
        for role, prompt in prompts.items():
            idx = [i for i in range(lo, hi) if roles[i] == role]
            if idx:
                out[np.asarray(idx) - lo] = embedder.encode([texts[i] for i in idx], prompt=prompt,
                                                            show_progress=False)
        with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, out)
        elapsed = time.perf_counter() - started
        rate = (hi - done_before * SHARD) / max(elapsed, 1e-9)
        log(f"  teacher vectors: shard {k + 1}/{shards} ({hi:,} texts, {rate:.0f} texts/s, "
            f"{(len(texts) - hi) / max(rate, 1e-9) / 60:.1f} min left)")
    return np.concatenate([np.load(_shard(folder, k)) for k in range(shards)]) if shards else \
        np.zeros((0, embedder.dim), dtype=np.float32)
