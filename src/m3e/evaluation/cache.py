"""Optional on-disk embedding cache: one SQLite file per model fingerprint, vectors stored as float32 bytes.

The file is keyed by :func:`m3e.models.fingerprint.model_fingerprint`, so a fine-tuned model under the same
name never reads the old model's vectors. Nothing is pickled; a corrupt or foreign file is refused with its
path.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np

from m3e.errors import InputError
from m3e.models.fingerprint import model_fingerprint


def _key(prompt: str, text: str) -> bytes:
    return hashlib.sha256(f"{prompt}\x00{text}".encode()).digest()


class EmbeddingCache:
    def __init__(self, folder: Path, embedder) -> None:
        from m3e.evaluation.runner import model_slug

        self.dim = embedder.dim
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{model_slug(embedder.name)}-{model_fingerprint(embedder)}.sqlite"
        try:
            self.db = sqlite3.connect(self.path)
            self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
        except sqlite3.DatabaseError as exc:
            raise InputError(f"embedding cache {self.path} is not usable ({exc}); delete it to start over") from None
        self.hits = 0

    def get(self, prompt: str, texts: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        keys = {_key(prompt, t): t for t in texts}
        items = list(keys)
        for i in range(0, len(items), 500):
            chunk = items[i:i + 500]
            rows = self.db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})",
                                   chunk).fetchall()
            for key, blob in rows:
                vec = np.frombuffer(blob, dtype="<f4")
                if vec.size == self.dim:
                    found[keys[bytes(key)]] = vec.copy()
        self.hits += len(found)
        return found

    def put(self, prompt: str, texts: list[str], vecs: np.ndarray) -> None:
        rows = [(_key(prompt, t), np.asarray(v, dtype="<f4").tobytes()) for t, v in zip(texts, vecs, strict=True)]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)", rows)

    def close(self) -> None:
        self.db.close()
