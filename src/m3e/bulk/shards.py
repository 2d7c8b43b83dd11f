"""The output of a bulk encode: parquet shards ``part-00000.parquet``... with the columns ``id``, ``text`` (unless
left out) and ``embedding`` (a fixed-size list of float32 or float16: the layout LanceDB, Chroma, DuckDB and
pandas read directly), and a manifest ``_m3e_encode.json`` that records the job and every finished shard.

A shard is written atomically (temporary file, fsync, rename) and only then entered in the manifest (itself
replaced atomically), so after a kill a shard either is in the manifest and complete, or is redone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from m3e.errors import InputError
from m3e.utils.atomic import atomic_path, write_text

MANIFEST = "_m3e_encode.json"
FORMAT = 1


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def schema(dim: int, dtype: str, with_text: bool):
    import pyarrow as pa

    value = pa.float16() if dtype == "float16" else pa.float32()
    fields = [pa.field("id", pa.string(), nullable=False)]
    if with_text:
        fields.append(pa.field("text", pa.string(), nullable=False))
    fields.append(pa.field("embedding", pa.list_(value, dim), nullable=False))
    return pa.schema(fields)


def embedding_array(vectors: np.ndarray, dtype: str):
    import pyarrow as pa

    flat = np.ascontiguousarray(vectors, dtype=np.float16 if dtype == "float16" else np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), vectors.shape[1])


def write_shard(folder: Path, index: int, ids: list[str], texts: list[str] | None, vectors: np.ndarray,
                dtype: str) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"id": pa.array(ids, pa.string())}
    if texts is not None:
        columns["text"] = pa.array(texts, pa.string())
    columns["embedding"] = embedding_array(vectors, dtype)
    table = pa.table(columns, schema=schema(vectors.shape[1], dtype, texts is not None))
    target = folder / shard_name(index)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return target


class Manifest:
    """The job's description (what must match to resume) and the finished shards with their counts."""

    def __init__(self, folder: Path, job: dict) -> None:
        self.folder, self.job = folder, job
        self.shards: list[dict] = []  # {"file", "rows", "tokens", "truncated"} in order
        self.skipped: dict[str, int] = {}
        self.complete = False
        self.seconds = 0.0

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    @classmethod
    def open(cls, folder: Path, job: dict, resume: bool) -> Manifest:
        """A new manifest for an empty (or new) folder, or the earlier run's when resuming the same job."""
        path = folder / MANIFEST
        if resume and not path.is_file() and not (folder.exists() and any(folder.iterdir())):
            resume = False  # `--resume` on a first run (nothing written yet) simply starts it
        if not resume:
            if folder.exists() and any(folder.iterdir()):
                done = ""
                if path.is_file():
                    earlier = json.loads(path.read_text(encoding="utf-8"))
                    done = f" (an earlier run wrote {len(earlier.get('shards', []))} shards)"
                raise InputError(f"{folder} is not empty{done}; pass --resume to continue that run, or choose a "
                                 "new folder")
            folder.mkdir(parents=True, exist_ok=True)
            manifest = cls(folder, job)
            manifest.save()
            return manifest
        if not path.is_file():
            raise InputError(f"{folder}: nothing to resume (no {MANIFEST}) but the folder is not empty; choose a new "
                             "folder")
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{path}: unreadable ({exc})") from None
        if saved.get("format") != FORMAT:
            raise InputError(f"{path}: written by another m3e version (format {saved.get('format')})")
        changed = sorted(k for k in set(job) | set(saved["job"]) if job.get(k) != saved["job"].get(k))
        if changed:
            detail = "; ".join(f"{k}: {saved['job'].get(k)!r} then, {job.get(k)!r} now" for k in changed[:4])
            raise InputError(f"{folder}: cannot resume, the job changed ({detail}); use the same inputs and "
                             "options, or a new folder")
        manifest = cls(folder, job)
        manifest.shards = list(saved.get("shards", []))
        manifest.skipped = dict(saved.get("skipped", {}))
        manifest.seconds = float(saved.get("seconds", 0.0))
        manifest.complete = bool(saved.get("complete"))
        listed = {s["file"] for s in manifest.shards}
        for stray in folder.glob("part-*.parquet"):  # written, then killed before the manifest named it
            if stray.name not in listed:
                stray.unlink()
        for s in manifest.shards:
            if not (folder / s["file"]).is_file():
                raise InputError(f"{folder}: {s['file']} is named by {MANIFEST} but missing; start over in a new "
                                 "folder")
        return manifest

    def add_shard(self, file: str, rows: int, tokens: int, truncated: int) -> None:
        self.shards.append({"file": file, "rows": rows, "tokens": tokens, "truncated": truncated})
        self.save()

    @property
    def rows_done(self) -> int:
        return sum(s["rows"] for s in self.shards)

    def save(self) -> None:
        body = {"format": FORMAT, "job": self.job, "shards": self.shards, "skipped": self.skipped,
                "complete": self.complete, "seconds": round(self.seconds, 3),
                "rows": self.rows_done, "tokens": sum(s["tokens"] for s in self.shards),
                "truncated": sum(s["truncated"] for s in self.shards)}
        write_text(self.path, json.dumps(body, indent=2, ensure_ascii=False))


def read_shards(folder: Path):
    """Every shard of a finished (or partial) output as one pyarrow table, in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        raise InputError(f"{folder}: no part-*.parquet shards")
    return pa.concat_tables([pq.read_table(f) for f in files])
