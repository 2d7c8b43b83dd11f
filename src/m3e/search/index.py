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
import fcntl
import hashlib
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
from m3e.search.documents import Document, ReadReport, iter_documents
from m3e.utils.atomic import as_if_created, atomic_path, write_text

FORMAT = 1
MANIFEST = "index.json"
PROBE = "M3E 索引指纹：用于确认查询与文档使用同一个模型。"
PROBE_MIN_COSINE = 0.99
EXACT_BELOW = 20_000  # chunks; at or above it searches use the HNSW graph unless told otherwise
SHARD = 8192  # chunks embedded and committed together
LOCK = "index.lock"  # held while a process updates the index (open_for_update)
READERS = "index.readers.lock"  # shared while a reader opens a generation's files, exclusive while one is removed
BUILD_STATE = "build-state.json"  # a build in progress: its job and the shards it has committed
BUILD_PART = "build-part-"  # a committed shard's chunk ids and vectors, until the build is saved
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


def _prompt(embedder, role: str) -> str:
    from m3e.models.encoding import named_prompt, role_prompt

    return named_prompt(embedder, role_prompt(embedder, role))


class Index:
    """Build, update, search, save and load an index. Updates take effect on disk at :meth:`save`."""

    def __init__(self, folder: Path, manifest: dict, embedder, work: Path, db: sqlite3.Connection, vectors):
        self.folder, self.manifest, self.embedder = folder, manifest, embedder
        self._work, self._db, self._vectors = work, db, vectors
        self._bm25 = None
        self._dirty = False
        self._build: dict | None = None  # a resumable build's job description (see build)
        self._lock = None  # the update lock's file, held by open_for_update

    # ---- creating and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | os.PathLike[str], embedder, *, chunk_size: int = 400, overlap: int = 80,
               exact_below: int = EXACT_BELOW, work: Path | None = None) -> Index:
        """An empty index that becomes ``folder`` at :meth:`save` (which must not exist or be empty); it is
        written in ``work`` (default: a fresh temporary folder beside it) until then."""
        folder = Path(folder)
        check_new_index(folder)
        chunk_text("x", chunk_size, overlap)  # validates the sizes
        folder.parent.mkdir(parents=True, exist_ok=True)
        if work is None:
            work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
            as_if_created(work, folder=True)
        else:
            work.mkdir(parents=True)
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
              resume: bool = True, shard_size: int = SHARD, log=None) -> tuple[Index, Change]:
        """Read, chunk, embed and store ``inputs`` as a new index at ``folder``, a shard of chunks at a time.

        The build happens in ``.<folder>.building`` beside it; each finished shard (its rows and vectors) is
        committed there, so the next build of the same inputs, model and chunking after an interruption continues
        from the last finished shard; one of other inputs or settings (or ``resume=False``) removes what the
        interrupted build left and starts over. Two builds of one folder at once: the second is refused."""
        folder = Path(folder)
        work = folder.parent / f".{folder.name}.building"
        job = {"inputs": _fingerprint_inputs(inputs), "model": embedder.name, "chunk_size": chunk_size,
               "overlap": overlap, "text_field": text_field, "id_field": id_field, "shard_size": shard_size}
        say = log or (lambda _msg: None)
        with _build_lock(folder):
            done = None
            if work.exists():
                done = cls._reopen_build(folder, work, embedder, job) if resume else None
                if done is None:
                    shutil.rmtree(work)
                    say(f"removed what an interrupted build of {folder} left in {work}"
                        + ("" if resume else " (resume off)"))
                else:
                    say(f"continuing the interrupted build of {folder}: {done[1]:,} documents were done")
            if done is None:
                index, skip = cls.create(folder, embedder, chunk_size=chunk_size, overlap=overlap,
                                         exact_below=exact_below, work=work), 0
                index._build = job
            else:
                index, skip = done
            try:
                change = index.add(inputs, text_field=text_field, id_field=id_field, batch_size=batch_size,
                                   show_progress=show_progress, shard_size=shard_size, skip_documents=skip)
                index.save()
            except BaseException:
                index.close()  # the committed shards stay in the build folder for the next build
                raise
        return index, change

    @classmethod
    def _reopen_build(cls, folder: Path, work: Path, embedder, job: dict) -> tuple[Index, int] | None:
        """The interrupted build in ``work`` reopened, or None when it cannot continue (no finished shard, or
        another job: other inputs, model or chunking)."""
        state_path = work / BUILD_STATE
        if not state_path.is_file():
            return None
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if any(state.get("job", {}).get(k) != job[k] for k in job):
            return None
        manifest = state["manifest"]
        check_model(manifest, embedder, folder)
        db = sqlite3.connect(work / "chunks-1.sqlite")
        vectors = _new_vectors(embedder.dim)
        for shard in range(state["shards"]):
            with np.load(work / f"{BUILD_PART}{shard:05d}.npz") as part:
                vectors.add(part["ids"], np.ascontiguousarray(part["vectors"]))
        with db:  # rows of a shard that was being written when the build stopped
            db.execute("DELETE FROM chunks WHERE id >= ?", (manifest["next_id"],))
        index = cls(folder, manifest, embedder, work, db, vectors)
        index._build = job
        index._dirty = True
        return index, state["documents"]

    @classmethod
    def load(cls, folder: str | os.PathLike[str], embedder=None, *, model: str | None = None, **load_kwargs) -> Index:
        """Open an index; ``embedder`` (or ``model``, default: the index's own) must give the index's vectors."""
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            hint = " (an interrupted build leaves no index; run it again)" if folder.exists() else ""
            raise InputError(f"{folder} is not an m3e index: no {MANIFEST}{hint}")
        manifest = _read_manifest(path)
        if embedder is None:
            from m3e.models.resolver import load_model

            embedder = load_model(model or manifest["model"], **load_kwargs)
        from usearch.index import Index as Vectors

        # The manifest and the files it names are read under the shared readers' lock: an update removes the
        # previous generation only under the exclusive one, so a reader never finds its files gone (and SQLite
        # opens read-only: a missing file is an error, never a new empty database).
        with _readers_lock(folder, exclusive=False):
            manifest = _read_manifest(path)
            gen = manifest["generation"]
            for name in (f"chunks-{gen}.sqlite", f"vectors-{gen}.usearch"):
                if not (folder / name).is_file():
                    raise InputError(f"{folder}: {name} named by {MANIFEST} is missing; the index is damaged")
            vectors = Vectors.restore(str(folder / f"vectors-{gen}.usearch"))
            db = sqlite3.connect(f"{(folder / f'chunks-{gen}.sqlite').resolve().as_uri()}?mode=ro", uri=True)
        check_model(manifest, embedder, folder)
        return cls(folder, manifest, embedder, folder, db, vectors)

    @classmethod
    @contextlib.contextmanager
    def open_for_update(cls, folder: str | os.PathLike[str], embedder=None, **load_kwargs):
        """Load, yield for changes, save: under an exclusive lock on the folder, so two processes updating one
        index take turns instead of writing the same generation's files."""
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            cls.load(folder, embedder, **load_kwargs)  # the clear error for a folder that is no index
        with open(folder / LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                gen = _read_manifest(folder / MANIFEST)["generation"]
                with _readers_lock(folder, exclusive=True):  # what a killed update left: newer or older files
                    _remove_orphans(folder, gen)
                index = cls.load(folder, embedder, **load_kwargs)
                try:
                    yield index
                    index.save()
                finally:
                    index.close()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

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
            id_field: str = "id", batch_size: int = 64, show_progress: bool = False, shard_size: int = SHARD,
            skip_documents: int = 0) -> Change:
        """Chunk, embed and add documents, a shard of about ``shard_size`` chunks at a time (so memory holds one
        shard's texts and vectors); a file already in the index is replaced by its new content."""
        start = time.perf_counter()
        report = ReadReport()
        if inputs and all(isinstance(d, Document) for d in inputs):
            docs = iter(inputs)
            report.documents = len(inputs)
        else:
            docs = iter_documents([Path(p) for p in inputs], report, text_field, id_field)
        change = Change(report=report)
        self._begin()
        replaced: set[str] = set()
        rows: list[tuple] = []
        texts: list[str] = []
        next_id = self.manifest["next_id"]
        done = 0
        progress = None
        if show_progress:
            from m3e.utils.progress import progress as new_progress

            progress = new_progress(desc="index", unit="chunks")

        def flush() -> None:
            if rows:
                vecs = self.embedder.encode(texts, prompt=self.manifest["prompts"]["passage"], batch_size=batch_size,
                                            show_progress=False)
                ids = np.array([r[0] for r in rows], dtype=np.uint64)
                with self._db:
                    self._db.executemany("INSERT INTO chunks (id, source, line, doc_id, chunk, start, end, text, "
                                         "metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._vectors.add(ids, np.ascontiguousarray(vecs))
                change.chunks += len(rows)
                if progress is not None:
                    progress.update(len(rows))
                if self._build is not None:
                    self._commit_shard(ids, vecs, next_id, done)
            rows.clear()
            texts.clear()

        for doc in docs:
            done += 1
            if done <= skip_documents:  # finished by the interrupted build this one resumes
                replaced.add(doc.source)
                continue
            if doc.source not in replaced:
                replaced.add(doc.source)
                removed = self._delete("source = ?", (doc.source,))
                if removed:
                    change.replaced_sources += 1
                    change.removed_chunks += removed
            for n, piece in enumerate(chunk_text(doc.text, self.manifest["chunk_size"], self.manifest["overlap"])):
                rows.append((next_id, doc.source, doc.line, doc.doc_id, n, piece.start, piece.end, piece.text,
                             json.dumps(doc.metadata, ensure_ascii=False, default=str)))
                texts.append(piece.text)
                next_id += 1
            if len(rows) >= shard_size:  # shards end between documents, so a resume restarts at a document
                flush()
        flush()
        if progress is not None:
            progress.close()
        change.documents = report.documents
        self.manifest["next_id"] = next_id
        self._bm25 = None
        self._count()
        change.seconds = time.perf_counter() - start
        return change

    def _commit_shard(self, ids: np.ndarray, vecs: np.ndarray, next_id: int, documents: int) -> None:
        """A build's shard is final: its vectors beside the rows, then the state that says so (atomically)."""
        shard = self._build_shards = getattr(self, "_build_shards", None) or self._shards_on_disk()
        with atomic_path(self._work / f"{BUILD_PART}{shard:05d}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, ids=ids, vectors=np.asarray(vecs, dtype=np.float32))
        self._build_shards = shard + 1
        manifest = dict(self.manifest, next_id=next_id)
        write_text(self._work / BUILD_STATE, json.dumps({"job": self._build, "shards": shard + 1,
                                                         "documents": documents, "manifest": manifest}))

    def _shards_on_disk(self) -> int:
        state = self._work / BUILD_STATE
        return json.loads(state.read_text(encoding="utf-8"))["shards"] if state.is_file() else 0

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
        write_text(self._work / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
        self.manifest = manifest
        if self._work != self.folder:
            for leftover in [*self._work.glob(f"{BUILD_PART}*.npz"), self._work / BUILD_STATE]:
                leftover.unlink(missing_ok=True)
            if self.folder.exists():
                self.folder.rmdir()  # empty (checked at create)
            self._db.close()
            os.replace(self._work, self.folder)
            self._work = self.folder
            self._db = sqlite3.connect(self.folder / f"chunks-{gen}.sqlite")
        with _readers_lock(self.folder, exclusive=True):  # no reader is between its manifest and its files
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
               candidates: int = 100, rescore=None) -> list[Hit]:
        """Top ``k`` chunks. ``rescore``: a second stage for the first stage's top ``candidates``, either an
        embedder (e.g. m3e-small-zh over an index built with m3e-static-zh: static speed at build time, most of the
        transformer's quality at query time) that re-scores them by its own cosine, embedding their texts on the
        fly, or a reranker (a cross-encoder) that reads the query with each of them."""
        if not isinstance(query, str) or not query.strip():
            raise InputError("the query is empty")
        if k < 1 or candidates < 1:
            raise InputError("k and candidates must be at least 1")
        pool = max(k, candidates) if hybrid or rescore is not None else k
        qv = self.embed_queries([query])
        dense = self.dense(qv, pool, exact)[0]
        if not hybrid:
            ranked = [(cid, s, s, None) for cid, s in dense[:pool]]
        else:
            lexical = self._lexical().top(query, max(k, candidates))
            dense_score, bm25_score = dict(dense), dict(lexical)
            from m3e.search.bm25 import rrf

            fused = rrf([[c for c, _ in dense], [c for c, _ in lexical]])[:pool]
            ranked = [(cid, s, dense_score.get(cid), bm25_score.get(cid)) for cid, s in fused]
        if rescore is None:
            return self._hits(ranked[:k])
        return self._rescored(query, ranked, rescore, k)

    def _rescored(self, query: str, ranked, embedder, k: int) -> list[Hit]:
        hits = self._hits(ranked)
        if not hits:
            return []
        if getattr(embedder, "kind", "") == "reranker":
            scores = embedder.score(query, [h.text for h in hits]).tolist()
        else:
            q = embedder.encode([query], prompt=_prompt(embedder, "query"), show_progress=False)
            docs = embedder.encode([h.text for h in hits], prompt=_prompt(embedder, "passage"),
                                   show_progress=False)
            scores = (docs @ q[0]).tolist()
        order = sorted(range(len(hits)), key=lambda i: (-round(scores[i], 6), hits[i].chunk_id))[:k]
        out = []
        for rank, i in enumerate(order, 1):
            hit = hits[i]
            hit.rank, hit.score = rank, round(float(scores[i]), 6)
            out.append(hit)
        return out

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


def check_new_index(folder: Path) -> None:
    """A new index goes where nothing is (or an empty folder)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder} already exists; update it with `m3e index add` or choose a new folder")


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


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path}: index format {manifest.get('format')} is not the {FORMAT} this m3e reads")
    return manifest


@contextlib.contextmanager
def _build_lock(folder: Path):
    """Held for a whole build: a second build of the same folder is refused, and the lock proves that a build
    folder found beside it belongs to no live process."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.parent / f".{folder.name}.build.lock"
    while True:
        fh = open(path, "a")  # noqa: SIM115 - closed below
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise InputError(f"{folder} is being built by another process") from None
        try:  # the holder before us may have removed the file after we opened it: lock the one at the path
            same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        fh.close()


@contextlib.contextmanager
def _readers_lock(folder: Path, exclusive: bool):
    """flock on the index's readers' lock file; an index on a read-only disk (no updates possible) needs none."""
    try:
        fh = open(folder / READERS, "a")  # noqa: SIM115 - held for the block
    except OSError:
        yield
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _remove_orphans(folder: Path, gen: int) -> None:
    """Files of other generations: replaced by a saved update, or left by one that was killed (callers hold the
    update lock, and the readers' lock exclusively)."""
    for f in folder.iterdir():
        stem, _, _ = f.name.partition(".")
        kind, _, number = stem.partition("-")
        if kind not in ("chunks", "vectors") or not number.isdigit() or int(number) == gen:
            continue
        with contextlib.suppress(OSError):
            f.unlink()


def _fingerprint_inputs(inputs) -> str:
    """The files a build reads (path and content), so a changed input starts the build over."""
    if inputs and all(isinstance(d, Document) for d in inputs):
        return hashlib.sha256("\n".join(f"{d.source}|{d.doc_id}|{len(d.text)}" for d in inputs).encode()
                              ).hexdigest()[:16]
    from m3e.search.documents import ReadReport as _Report
    from m3e.search.documents import _files

    files = _files(inputs, _Report())
    from m3e.utils.paths import file_digest

    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.resolve()}|{file_digest(f)}\n".encode())
    return h.hexdigest()[:16]
