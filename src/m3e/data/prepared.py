"""Training sources of any size: converted once into an on-disk Arrow cache, then memory-mapped.

    file (jsonl/json/csv/tsv/parquet, squad, kbqa) --stream--> rows --RowParser--> records
        --> <cache>/<key>/records.arrow   anchor, positive, negatives, score (Arrow IPC, memory-mapped)
            <cache>/<key>/hashes.npy      a 64-bit hash of every text (numpy, memory-mapped): the batch plan's
                                          duplicate check and the test-overlap filter run on these arrays
            <cache>/<key>/meta.json       kind, columns, counts, skipped rows per reason (first line of each)

The key hashes the file (path, size, modification time) and every option that changes its records, so an edited
file or another ``columns:`` builds a new cache, and a second run (or every rank of a distributed run) maps the
same one. Conversion streams: memory holds one chunk of rows, whatever the file size. Why pyarrow directly and
not ``datasets``: row-by-row parsing keeps the file:line of every skipped row, and the cache is two plain files
every process can map.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from m3e.data.records import (
    FILE_TYPES,
    MALFORMED,
    Record,
    RowParser,
    Source,
    SourceInfo,
    file_rows,
)
from m3e.data.rows import walk_inputs
from m3e.data.skips import SkipReport
from m3e.data.texthash import hash_texts
from m3e.errors import InputError
from m3e.utils.atomic import atomic_dir
from m3e.utils.paths import m3e_home

CACHE_FORMAT = 1
CHUNK = 65_536  # rows per Arrow record batch while converting
PREPARED = "m3e-prepared.json"  # marks a folder written by `m3e data prepare`
CONTENT_OPTIONS = ("format", "encoding", "columns", "rename", "replace", "max_negatives", "parallel")


def default_cache_dir() -> Path:
    return Path(os.environ["M3E_DATA_CACHE"]) if os.environ.get("M3E_DATA_CACHE") else m3e_home() / "data-cache"


def source_key(path: Path, options: dict) -> str:
    """The cache entry of a file read with ``options``: by path and content (an edit in place is never served
    from the cache, a touch or a copy back is)."""
    from m3e.utils.paths import file_digest

    wanted = {k: options.get(k) for k in CONTENT_OPTIONS}
    twin = Path(options["parallel"]["path"]) if isinstance(options.get("parallel"), dict) else None
    if twin is not None:  # the translation's contents are part of the records too
        wanted["parallel"] = {**options["parallel"], "path": str(twin.resolve()),
                              "content": file_digest(twin) if twin.is_file() else None}
    blob = json.dumps({"cache": CACHE_FORMAT, "path": str(path.resolve()), "size": path.stat().st_size,
                       "content": file_digest(path), "options": wanted}, sort_keys=True, ensure_ascii=False)
    return f"{path.stem[:40]}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _schema():
    import pyarrow as pa

    return pa.schema([("anchor", pa.string()), ("positive", pa.string()), ("negatives", pa.list_(pa.string())),
                      ("score", pa.float64())])


def build_cache(path: Path, folder: Path, name: str, options: dict, progress=None) -> dict:
    """Stream ``path`` into a cache folder (written beside it and renamed into place); returns its meta."""
    import pyarrow as pa

    started = time.perf_counter()
    info = SourceInfo(name, "pair")
    parser: RowParser | None = None
    malformed_first: list[int] = []
    max_neg = options.get("max_negatives")
    cols: dict[str, list] = {"anchor": [], "positive": [], "negatives": [], "score": []}
    chunks: list[Path] = []
    n = width = 0
    any_negatives = False
    scores: set[float] = set()
    rows = file_rows(path, options.get("format"), options.get("encoding"), options.get("columns"),
                     options.get("rename"), options.get("replace"), options.get("parallel"))
    with atomic_dir(folder) as tmp:
        writer = pa.ipc.new_file(str(tmp / "records.arrow"), _schema())

        def flush() -> None:
            nonlocal n, width
            m = len(cols["anchor"])
            if not m:
                return
            writer.write_batch(pa.record_batch([pa.array(cols[k], type=t.type) for k, t in
                                                zip(cols, _schema(), strict=True)], schema=_schema()))
            w = 2 + max((len(x) for x in cols["negatives"]), default=0)
            h = np.zeros((m, w), dtype=np.uint64)
            h[:, 0] = hash_texts(cols["anchor"])
            h[:, 1] = hash_texts(cols["positive"])
            for i, negs in enumerate(cols["negatives"]):
                if negs:
                    h[i, 2:2 + len(negs)] = hash_texts(negs)
            chunk = tmp / f"hashes-{len(chunks):05d}.npy"
            np.save(chunk, h)
            chunks.append(chunk)
            n += m
            width = max(width, w)
            for v in cols.values():
                v.clear()
            if progress is not None:
                progress(n)

        for no, row in rows:
            if parser is None:
                if row is None:
                    malformed_first.append(no)
                    continue
                parser = RowParser(set(row), str(path), info)
                for bad in malformed_first:
                    parser.skip(MALFORMED, bad)
            for anchor, positive, negatives, score in parser.parse(no, row):
                if max_neg is not None:
                    negatives = negatives[:max_neg]
                cols["anchor"].append(anchor)
                cols["positive"].append(positive)
                cols["negatives"].append(negatives)
                cols["score"].append(score)
                any_negatives = any_negatives or bool(negatives)
                if score is not None and len(scores) < 2:
                    scores.add(score)
            if len(cols["anchor"]) >= CHUNK:
                flush()
        flush()
        writer.close()
        if parser is None:
            raise InputError(f"{path}: no rows")
        if info.kind == "triplet" and not any_negatives:
            info.kind = "pair"
        if info.kind == "scored" and len(scores) < 2:
            raise InputError(f"{path}: scored pairs need at least two distinct scores for CoSENT")
        hashes = np.lib.format.open_memmap(tmp / "hashes.npy", mode="w+", dtype=np.uint64, shape=(n, width or 2))
        start = 0
        for chunk in chunks:  # one chunk in memory at a time
            h = np.load(chunk)
            hashes[start:start + len(h), :h.shape[1]] = h
            start += len(h)
            chunk.unlink()
        hashes.flush()
        del hashes
        meta = {"cache_format": CACHE_FORMAT, "source": str(path), "name": name, "kind": info.kind,
                "columns": list(info.columns), "records": n, "hash_width": width or 2,
                "skipped": dict(info.skipped), "skip_examples": info.skipped.examples, "options": options,
                "seconds": round(time.perf_counter() - started, 2)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return meta


@contextlib.contextmanager
def _locked(lock: Path):
    """One builder per cache entry: other processes (ranks of a distributed run) wait, then map its result."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _ChunkView:
    """Random access to one record batch without pyarrow calls per record: numpy views of the offset buffers and
    the raw UTF-8 bytes (a record costs a few slices, whatever the number of chunks)."""

    def __init__(self, batch) -> None:
        self.strings = [self._string_view(batch.column(k)) for k in (0, 1)]
        negs = batch.column(2)
        self.list_offsets = np.frombuffer(negs.buffers()[1], dtype=np.int32)[negs.offset:negs.offset + len(negs) + 1]
        self.neg_strings = self._string_view(negs.values)
        score = batch.column(3)
        self.scores = None if score.null_count == len(score) else score.to_numpy(zero_copy_only=False)

    @staticmethod
    def _string_view(arr):
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + len(arr) + 1]
        return offsets, memoryview(arr.buffers()[2]) if arr.buffers()[2] is not None else memoryview(b"")

    def text(self, column: int, i: int) -> str:
        offsets, data = self.strings[column]
        return bytes(data[offsets[i]:offsets[i + 1]]).decode("utf-8")

    def texts(self, i: int) -> list[str]:
        start, end = self.list_offsets[i], self.list_offsets[i + 1]
        if start == end:
            return []
        offsets, data = self.neg_strings
        return [bytes(data[offsets[j]:offsets[j + 1]]).decode("utf-8") for j in range(start, end)]

    def score(self, i: int) -> float | None:
        return None if self.scores is None else float(self.scores[i])


class ArrowSource(SourceInfo):
    """A cached source, memory-mapped: the same interface as :class:`~m3e.data.records.Source` (``len``,
    :meth:`batch`, :meth:`hashes`, :meth:`sample`, :meth:`drop_overlapping`) with memory that does not grow with
    the number of records (a selection is one int array)."""

    def __init__(self, folder: Path, meta: dict, **info) -> None:
        import pyarrow as pa

        super().__init__(meta["name"], meta["kind"], columns=tuple(meta["columns"]))
        for k, v in info.items():
            if v is not None:
                setattr(self, k, v)
        self.folder, self.meta, self.key = folder, meta, folder.name
        examples = meta.get("skip_examples") or {k: [f"row {v}"] for k, v in meta.get("first_skip", {}).items()}
        self.skipped = SkipReport(meta["skipped"], examples)  # first_skip: caches written before SkipReport
        reader = pa.ipc.open_file(pa.memory_map(str(folder / "records.arrow")))
        self._chunks = [reader.get_batch(i) for i in range(reader.num_record_batches)]  # zero-copy views
        self._starts = np.cumsum([0] + [len(c) for c in self._chunks])
        self._views: dict[int, _ChunkView] = {}
        self._hashes = np.load(folder / "hashes.npy", mmap_mode="r")
        self.rows: np.ndarray | None = None  # the selected records' row numbers; None: all of them
        self._banned = np.zeros(0, dtype=np.uint64)  # negatives removed by the test-overlap filter

    def __len__(self) -> int:
        return int(self.meta["records"]) if self.rows is None else len(self.rows)

    @property
    def records(self) -> list[Record]:  # small sources only: every record as an object
        return self.batch(range(len(self)))

    def _global(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        return idx if self.rows is None else self.rows[idx]

    def hashes(self) -> np.ndarray:
        return self._hashes if self.rows is None else self._hashes[self.rows]

    def batch(self, indices) -> list[Record]:

        rows = self._global(indices)
        chunk_of = np.searchsorted(self._starts, rows, side="right") - 1
        local = rows - self._starts[chunk_of]
        anchors, positives, negatives, scores = [], [], [], []
        for c, i in zip(chunk_of.tolist(), local.tolist(), strict=True):
            view = self._view(c)
            anchors.append(view.text(0, i))
            positives.append(view.text(1, i))
            negatives.append(view.texts(i))
            scores.append(view.score(i))
        if len(self._banned):
            hit = np.isin(self._hashes[rows, 2:], self._banned)
            negatives = [[x for j, x in enumerate(negs) if not hit[i, j]] for i, negs in enumerate(negatives)]
        return [Record(a, p, n or [], s) for a, p, n, s in zip(anchors, positives, negatives, scores, strict=True)]

    def _view(self, c: int) -> _ChunkView:
        view = self._views.get(c)
        if view is None:
            view = self._views[c] = _ChunkView(self._chunks[c])
        return view

    def sample(self, limit: int, seed: int = 0) -> None:
        """Keep a fixed-seed sample of ``limit`` records: the same ones :meth:`Source.sample` keeps."""
        if len(self) > limit:
            order = list(range(len(self)))
            random.Random(seed).shuffle(order)
            self.skipped["over max_records (fixed-seed sample kept)"] += len(self) - limit
            self.rows = self._global(order[:limit])

    def drop_overlapping(self, banned: np.ndarray) -> tuple[int, int]:
        h = self.hashes()
        hit = np.isin(h, banned) & (h != 0)
        drop = hit[:, 0] | hit[:, 1]
        removed = int(hit[~drop, 2:].sum())
        self.rows = self._global(np.flatnonzero(~drop))
        self._banned = np.union1d(self._banned, banned)
        if drop.any():
            self.skipped["overlaps an evaluation text"] += int(drop.sum())
        return int(drop.sum()), removed

    def to_memory(self) -> Source:
        info = {k: getattr(self, k) for k in ("weight", "instruction", "doc_instruction", "keep_base", "license",
                                              "skipped", "columns")}
        return Source(self.name, self.kind, self.records, **info)

    def scores(self) -> np.ndarray:
        """The selected records' scores (NaN where none): one float column, read only for scored sources."""
        out = np.concatenate([c.column(3).to_numpy(zero_copy_only=False).astype(np.float64) for c in self._chunks]
                             or [np.zeros(0)])
        return out if self.rows is None else out[self.rows]


def prepare_source(path: str | Path, cache_dir: str | Path | None = None, name: str | None = None,
                   weight: float = 1.0, instruction: str | None = None, doc_instruction: str | None = None,
                   keep_base: float | None = None, license: str | None = None,  # noqa: A002
                   progress=None, **options) -> ArrowSource:
    """The cached source of a training file (built on first use); ``options`` as :func:`read_source`'s."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    unknown = set(options) - set(CONTENT_OPTIONS)
    if unknown:
        raise InputError(f"unknown source options {sorted(unknown)}")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = cache_dir / source_key(path, options)
    with _locked(cache_dir / ".locks" / f"{folder.name}.lock"):
        if not (folder / "meta.json").is_file():
            build_cache(path, folder, name or path.stem, options, progress)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    return ArrowSource(folder, meta, name=name or path.stem, weight=weight, instruction=instruction,
                       doc_instruction=doc_instruction, keep_base=keep_base, license=license)


def prepare_sources(path: str | Path, cache_dir: str | Path | None = None, ignored: list[Path] | None = None,
                    **options) -> list[ArrowSource]:
    """A file is one source; a folder gives one per data file below it (other files go to ``ignored``, for the
    caller to report); a folder written by ``m3e data prepare`` gives the sources it lists."""
    path = Path(path)
    if path.is_dir() and (path / PREPARED).is_file():
        return open_prepared(path)
    return [prepare_source(f, cache_dir, **options) for f in walk_inputs([path], FILE_TYPES, ignored)]


def open_prepared(folder: Path) -> list[ArrowSource]:
    listing = json.loads((folder / PREPARED).read_text(encoding="utf-8"))
    out = []
    for entry in listing["sources"]:
        cache = folder / entry["key"]
        if not (cache / "meta.json").is_file():
            raise InputError(f"{folder}: {entry['key']} named by {PREPARED} is missing; run `m3e data prepare` again")
        meta = json.loads((cache / "meta.json").read_text(encoding="utf-8"))
        out.append(ArrowSource(cache, meta, name=entry["name"]))
    return out


def write_prepared(folder: Path, sources: list[ArrowSource]) -> Path:
    from m3e.utils.atomic import write_text

    listing = {"format": CACHE_FORMAT, "sources": [{"name": s.name, "key": s.key, "source": s.meta["source"],
                                                    "kind": s.kind, "records": len(s),
                                                    "skipped": dict(s.skipped)} for s in sources]}
    return write_text(folder / PREPARED, json.dumps(listing, indent=2, ensure_ascii=False))
