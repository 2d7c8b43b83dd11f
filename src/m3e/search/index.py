"""A document index on disk: chunk vectors in usearch, chunk texts and metadata in SQLite, one manifest.

Layout of an index folder::

    index.json               manifest: format, model, prompts, probe vector, chunking, generation, counts
    chunks-<gen>.sqlite      chunks: id, source, line, doc_id, chunk number, offsets, text, metadata (JSON)
    vectors-<gen>.usearch    usearch index keyed by chunk id (inner product on unit vectors = cosine)

Crash safety: a new index is written in a temporary folder and renamed into place; an update writes the next
generation's files beside the current ones and then replaces ``index.json`` atomically, so a killed build or
update leaves either the old complete index or no index, never a half-written one that loads. Nothing is
pickled: the manifest is JSON, texts are SQLite rows, vectors are usearch's own binary format.

Model safety: the manifest keeps the model name and its vector for a fixed probe sentence; a model whose probe
vector differs (cosine below ``PROBE_MIN_COSINE``) is refused, so queries are never embedded by another model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from m3e.errors import InputError, M3EError
from m3e.search.chunking import chunk_text
from m3e.search.documents import Document, ReadReport, read_documents

FORMAT = 1
MANIFEST = "index.json"
PROBE = "M3E 索引指纹：用于确认查询与文档使用同一个模型。"
PROBE_MIN_COSINE = 0.99
EXACT_BELOW = 20_000  # chunks; at or above it searches use the HNSW graph unless told otherwise
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, line INTEGER, doc_id TEXT NOT NULL, chunk INTEGER NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL, words TEXT);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
"""


@dataclass
class Hit:
    rank: int
    score: float  # cosine (dense) or fused reciprocal-rank score (hybrid)
    chunk_id: int
    source: str
    doc_id: str
    chunk: int
    start: int
    end: int
    text: str
    metadata: dict = field(default_factory=dict)
    line: int | None = None
    dense_score: float | None = None
    bm25_score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Change:
    documents: int = 0
    chunks: int = 0
    replaced_sources: int = 0
    removed_chunks: int = 0
    report: ReadReport | None = None
    seconds: float = 0.0


def _probe(embedder, prompt: str) -> np.ndarray:
    return np.asarray(embedder.encode([PROBE], prompt=prompt, show_progress=False), dtype=np.float32)[0]


def _prompt(embedder, name: str) -> str:
    return embedder.prompts.get(name, "")


class Index:
    """Build, update, search, save and load an index. Updates take effect on disk at :meth:`save`."""

    def __init__(self, folder: Path, manifest: dict, embedder, work: Path, db: sqlite3.Connection, vectors):
        self.folder, self.manifest, self.embedder = folder, manifest, embedder
        self._work, self._db, self._vectors = work, db, vectors
        self._bm25 = None
        self._dirty = False

    # ---- creating and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | os.PathLike[str], embedder, *, chunk_size: int = 400, overlap: int = 80,
               exact_below: int = EXACT_BELOW) -> Index:
        """An empty index that becomes ``folder`` at :meth:`save` (which must not exist or be empty)."""
        folder = Path(folder)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise InputError(f"{folder} already exists; update it with `m3e index add` or choose a new folder")
        chunk_text("x", chunk_size, overlap)  # validates the sizes
        folder.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        passage, query = _prompt(embedder, "passage"), _prompt(embedder, "query")
        manifest = {
            "format": FORMAT, "model": embedder.name, "backend": getattr(embedder, "backend", "torch"),
            "dim": embedder.dim, "max_length": embedder.max_length,
            "prompts": {"passage": passage, "query": query},
            "probe": [round(float(x), 6) for x in _probe(embedder, passage)],
            "chunk_size": chunk_size, "overlap": overlap, "exact_below": exact_below,
            "generation": 0, "next_id": 1, "chunks": 0, "documents": 0, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        db = sqlite3.connect(work / "chunks-1.sqlite")
        db.executescript(_SCHEMA)
        return cls(folder, manifest, embedder, work, db, _new_vectors(embedder.dim))

    @classmethod
    def build(cls, inputs: list[str | os.PathLike[str]], folder: str | os.PathLike[str], embedder, *,
              chunk_size: int = 400, overlap: int = 80, text_field: str = "text", id_field: str = "id",
              batch_size: int = 64, exact_below: int = EXACT_BELOW, show_progress: bool = False,
              ) -> tuple[Index, Change]:
        index = cls.create(folder, embedder, chunk_size=chunk_size, overlap=overlap, exact_below=exact_below)
        try:
            change = index.add(inputs, text_field=text_field, id_field=id_field, batch_size=batch_size,
                               show_progress=show_progress)
            index.save()
        except BaseException:
            index.close()
            shutil.rmtree(index._work, ignore_errors=True)
            raise
        return index, change

    @classmethod
    def load(cls, folder: str | os.PathLike[str], embedder=None, *, model: str | None = None, **load_kwargs) -> Index:
        """Open an index; ``embedder`` (or ``model``, default: the index's own) must give the index's vectors."""
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            hint = " (an interrupted build leaves no index; run it again)" if folder.exists() else ""
            raise InputError(f"{folder} is not an m3e index: no {MANIFEST}{hint}")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable manifest ({exc})") from None
        if manifest.get("format") != FORMAT:
            raise InputError(f"{path}: index format {manifest.get('format')} is not the {FORMAT} this m3e reads")
        gen = manifest["generation"]
        for name in (f"chunks-{gen}.sqlite", f"vectors-{gen}.usearch"):
            if not (folder / name).is_file():
                raise InputError(f"{folder}: {name} named by {MANIFEST} is missing; the index is damaged")
        _remove_orphans(folder, gen, older_only=True)  # newer ones may be another process's update
        if embedder is None:
            from m3e.models.resolver import load_model

            embedder = load_model(model or manifest["model"], **load_kwargs)
        check_model(manifest, embedder, folder)
        from usearch.index import Index as Vectors

        vectors = Vectors.restore(str(folder / f"vectors-{gen}.usearch"))
        db = sqlite3.connect(folder / f"chunks-{gen}.sqlite")
        return cls(folder, manifest, embedder, folder, db, vectors)

    # ---- updating ----------------------------------------------------------------------------
    def _begin(self) -> None:
        """Move edits onto the next generation's SQLite file (a copy), leaving the saved one untouched."""
        if self._dirty:
            return
        gen = self.manifest["generation"]
        if self._work == self.folder and gen > 0:
            nxt = self._work / f"chunks-{gen + 1}.sqlite"
            dst = sqlite3.connect(nxt)
            self._db.backup(dst)
            self._db.close()
            self._db = dst
        self._dirty = True

    def add(self, inputs: list[str | os.PathLike[str]] | list[Document], *, text_field: str = "text",
            id_field: str = "id", batch_size: int = 64, show_progress: bool = False) -> Change:
        """Chunk, embed and add documents; a file already in the index is replaced by its new content."""
        start = time.perf_counter()
        if inputs and all(isinstance(d, Document) for d in inputs):
            docs, report = list(inputs), ReadReport(documents=len(inputs))
        else:
            docs, report = read_documents([Path(p) for p in inputs], text_field=text_field, id_field=id_field)
        change = Change(documents=len(docs), report=report)
        self._begin()
        sources = sorted({d.source for d in docs})
        for s in sources:
            removed = self._delete("source = ?", (s,))
            if removed:
                change.replaced_sources += 1
                change.removed_chunks += removed
        rows, texts = [], []
        next_id = self.manifest["next_id"]
        for doc in docs:
            for n, piece in enumerate(chunk_text(doc.text, self.manifest["chunk_size"], self.manifest["overlap"])):
                rows.append((next_id, doc.source, doc.line, doc.doc_id, n, piece.start, piece.end, piece.text,
                             json.dumps(doc.metadata, ensure_ascii=False)))
                texts.append(piece.text)
                next_id += 1
        if rows:
            vecs = self.embedder.encode(texts, prompt=self.manifest["prompts"]["passage"], batch_size=batch_size,
                                        show_progress=show_progress)
            with self._db:
                self._db.executemany("INSERT INTO chunks (id, source, line, doc_id, chunk, start, end, text, metadata)"
                                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._vectors.add(np.array([r[0] for r in rows], dtype=np.uint64), np.ascontiguousarray(vecs))
        self.manifest["next_id"] = next_id
        change.chunks = len(rows)
        self._bm25 = None
        self._count()
        change.seconds = time.perf_counter() - start
        return change

    def remove(self, *, sources: list[str | os.PathLike[str]] = (), doc_ids: list[str] = ()) -> Change:
        """Remove every chunk of the given files (a folder removes all files under it) or document ids."""
        self._begin()
        change = Change()
        for s in sources:
            path = str(Path(s).expanduser().resolve())
            change.removed_chunks += self._delete("source = ? OR source LIKE ? ESCAPE '\\'",
                                                  (path, _like_prefix(path.rstrip(os.sep) + os.sep)))
        for d in doc_ids:
            change.removed_chunks += self._delete("doc_id = ?", (str(d),))
        self._bm25 = None
        self._count()
        return change

    def _delete(self, where: str, args: tuple) -> int:
        ids = [r[0] for r in self._db.execute(f"SELECT id FROM chunks WHERE {where}", args)]
        if ids:
            with self._db:
                self._db.execute(f"DELETE FROM chunks WHERE {where}", args)
            self._vectors.remove(np.array(ids, dtype=np.uint64))
        return len(ids)

    def _count(self) -> None:
        self.manifest["chunks"] = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        self.manifest["documents"] = self._db.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT source, line, doc_id FROM chunks)").fetchone()[0]

    def save(self) -> Path:
        """Commit: write the vectors and the manifest (atomically), then drop the previous generation."""
        if not self._dirty and self._work == self.folder:
            return self.folder
        old = self.manifest["generation"]
        gen = old + 1
        self._db.commit()
        self._vectors.save(str(self._work / f"vectors-{gen}.usearch"))
        manifest = dict(self.manifest, generation=gen, saved=time.strftime("%Y-%m-%dT%H:%M:%S"))
        tmp = self._work / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self._work / MANIFEST)
        self.manifest = manifest
        if self._work != self.folder:
            if self.folder.exists():
                self.folder.rmdir()  # empty (checked at create)
            self._db.close()
            os.replace(self._work, self.folder)
            self._work = self.folder
            self._db = sqlite3.connect(self.folder / f"chunks-{gen}.sqlite")
        _remove_orphans(self.folder, gen)
        self._dirty = False
        return self.folder

    def close(self) -> None:
        self._db.close()

    # ---- searching ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.manifest["chunks"])

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        return self.embedder.encode(queries, prompt=self.manifest["prompts"]["query"], show_progress=False)

    def dense(self, query_vecs: np.ndarray, k: int, exact: bool | None = None) -> list[list[tuple[int, float]]]:
        """(chunk id, cosine) best first for each query vector; exact below the size threshold by default."""
        n = len(self._vectors)
        if n == 0:
            return [[] for _ in range(len(query_vecs))]
        if exact is None:
            exact = n < self.manifest["exact_below"]
        k = min(k, n)
        found = self._vectors.search(np.ascontiguousarray(query_vecs, dtype=np.float32), k, exact=exact)
        keys = np.atleast_2d(found.keys)
        dist = np.atleast_2d(found.distances)
        out = []
        for row_k, row_d in zip(keys, dist, strict=True):
            pairs = [(int(key), float(1.0 - d)) for key, d in zip(row_k, row_d, strict=True)
                     if key != np.iinfo(np.uint64).max]
            # Equal cosines: lower chunk id first, so results never depend on the graph's order.
            out.append(sorted(pairs, key=lambda p: (-round(p[1], 6), p[0])))
        return out

    def search(self, query: str, k: int = 5, *, hybrid: bool = False, exact: bool | None = None,
               candidates: int = 100) -> list[Hit]:
        if not isinstance(query, str) or not query.strip():
            raise InputError("the query is empty")
        if k < 1:
            raise InputError("k must be at least 1")
        qv = self.embed_queries([query])
        dense = self.dense(qv, max(k, candidates) if hybrid else k, exact)[0]
        if not hybrid:
            return self._hits([(cid, s, s, None) for cid, s in dense[:k]])
        lexical = self._lexical().top(query, max(k, candidates))
        dense_score, bm25_score = dict(dense), dict(lexical)
        from m3e.search.bm25 import rrf

        fused = rrf([[c for c, _ in dense], [c for c, _ in lexical]])[:k]
        return self._hits([(cid, s, dense_score.get(cid), bm25_score.get(cid)) for cid, s in fused])

    def _hits(self, ranked: list[tuple[int, float, float | None, float | None]]) -> list[Hit]:
        if not ranked:
            return []
        ids = [r[0] for r in ranked]
        rows = {r[0]: r for r in self._db.execute(
            f"SELECT id, source, line, doc_id, chunk, start, end, text, metadata FROM chunks WHERE id IN "
            f"({','.join('?' * len(ids))})", ids)}
        hits = []
        for rank, (cid, score, dense, bm25) in enumerate(ranked, 1):
            _, source, line, doc_id, chunk, start, end, text, meta = rows[cid]
            hits.append(Hit(rank, round(score, 6), cid, source, doc_id, chunk, start, end, text, json.loads(meta),
                            line, None if dense is None else round(dense, 6),
                            None if bm25 is None else round(bm25, 6)))
        return hits

    def _lexical(self):
        """BM25 over jieba words; words are computed once per chunk and kept in the SQLite file when writable."""
        if self._bm25 is None:
            from m3e.search.bm25 import BM25, words

            todo = self._db.execute("SELECT id, text FROM chunks WHERE words IS NULL").fetchall()
            if todo:
                done = [(" ".join(words(text)), cid) for cid, text in todo]
                try:
                    with self._db:
                        self._db.executemany("UPDATE chunks SET words = ? WHERE id = ?", done)
                except sqlite3.OperationalError:  # a read-only index: keep them in memory only
                    pass
            rows = self._db.execute("SELECT id, words FROM chunks ORDER BY id").fetchall()
            cached = {cid: w for w, cid in done} if todo else {}
            ids = [r[0] for r in rows]
            toks = [(r[1] if r[1] is not None else cached.get(r[0], "")).split() for r in rows]
            self._bm25 = BM25(ids, toks)
        return self._bm25

    def info(self) -> dict:
        keys = ("model", "backend", "dim", "chunks", "documents", "chunk_size", "overlap", "exact_below",
                "generation", "created", "saved", "prompts")
        return {k: self.manifest.get(k) for k in keys} | {"folder": str(self.folder)}


def check_model(manifest: dict, embedder, folder: Path) -> None:
    """Refuse an embedder whose vectors are not the index's (dimension, then the probe sentence's vector)."""
    if embedder.dim != manifest["dim"]:
        raise M3EError(f"index {folder} holds {manifest['dim']}-dim vectors of {manifest['model']}; model "
                       f"{embedder.name} gives {embedder.dim}-dim vectors. Search with --model {manifest['model']}")
    probe = _probe(embedder, manifest["prompts"]["passage"])
    cos = float(probe @ np.asarray(manifest["probe"], dtype=np.float32))
    if cos < PROBE_MIN_COSINE:
        raise M3EError(f"index {folder} was built with {manifest['model']}; model {embedder.name} gives other "
                       f"vectors (cosine {cos:.3f} on the probe sentence). Search with --model "
                       f"{manifest['model']} or rebuild the index with this model")


def _new_vectors(dim: int):
    from usearch.index import Index as Vectors

    return Vectors(ndim=dim, metric="ip", dtype="f32")


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _remove_orphans(folder: Path, gen: int, older_only: bool = False) -> None:
    """Files of other generations: replaced by a saved update, or left by one that was killed."""
    for f in folder.iterdir():
        stem, _, _ = f.name.partition(".")
        kind, _, number = stem.partition("-")
        if kind not in ("chunks", "vectors") or not number.isdigit() or int(number) == gen:
            continue
        if int(number) < gen or not older_only:
            with contextlib.suppress(OSError):
                f.unlink()
