"""Training records from files, folders and Hugging Face datasets: one source per file, type read from columns.

Record kinds (the M3E / uniem / BGE formats, with aliases):

- ``pair``: anchor + positive. Columns ``text/text_pos``, ``query/positive``, ``anchor/positive``,
  ``query/pos`` (a string), ``instruction/output`` (uniem's instruction data), ``sentence1/sentence2`` or
  ``text1/text2`` (without a label or score).
- ``triplet``: a pair plus hard negatives. ``text_neg``, ``negative``, or BGE's ``{"query", "pos": [...],
  "neg": [...]}`` (each positive becomes a record with the query's negatives).
- ``scored``: ``sentence1, sentence2`` (or ``text1, text2``) with ``label`` or ``score`` (CoSENT).

Files without a header (tsv/csv) take ``columns=[...]``; ``rename={"old": "new"}`` maps other names onto these.
Files are read as streams (line by line, parquet batch by batch), so :mod:`m3e.data.prepared` converts sources
of any size with bounded memory; :func:`read_source` keeps a small source in memory.

Extra columns are ignored. Each source reports what was detected, how many records it gave and how many rows
were skipped and why (empty text, missing field, malformed row); nothing is dropped silently.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m3e.data.rows import file_encoding, iter_rows, json_document, walk_inputs
from m3e.data.skips import SkipReport
from m3e.data.texthash import hash_texts
from m3e.errors import InputError

FILE_TYPES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
TEXT_FORMATS = (".squad", ".kbqa")  # SQuAD JSON (question -> paragraph), NLPCC KBQA records (question -> triple)

PAIR_COLUMNS = [("text", "text_pos"), ("query", "positive"), ("anchor", "positive"), ("query", "pos"),
                ("instruction", "output"), ("sentence1", "sentence2"), ("text1", "text2")]
NEG_COLUMNS = ("text_neg", "negative", "neg", "negatives", "hard_negative")
SCORE_COLUMNS = ("label", "score")
MALFORMED = "malformed row (not as many fields as the header)"


@dataclass
class Record:
    anchor: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    score: float | None = None  # scored pairs only


@dataclass
class SourceInfo:
    """What every source carries besides its records: how to prompt them, how often to draw, what was skipped."""

    name: str
    kind: str  # pair | triplet | scored
    weight: float = 1.0
    instruction: str | None = None  # anchor prefix: a literal string or one of the model's prompt names
    doc_instruction: str | None = None  # prefix for positives and negatives
    keep_base: float | None = None  # this source's weight of the drift term (None: the run's TrainConfig.keep_base)
    license: str | None = None  # as its recipe states it (model card, recipe report)
    skipped: SkipReport = field(default_factory=SkipReport)  # reason -> count, with the first rows
    columns: tuple[str, ...] = ()

    def report(self) -> str:
        return (f"{self.name}: {self.kind} records from columns {', '.join(self.columns)}; {len(self)} used, "
                f"skipped: {self.skipped.summary()}")


@dataclass
class Source(SourceInfo):
    """A source held in memory. The trainer reads every source through ``len``, :meth:`batch` and
    :meth:`hashes`, which :class:`m3e.data.prepared.ArrowSource` (memory-mapped, any size) provides too."""

    records: list[Record] = field(default_factory=list)
    _hashes: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __init__(self, name: str, kind: str, records: list[Record] | None = None, **info) -> None:
        SourceInfo.__init__(self, name, kind, **info)
        self.records = list(records or [])
        self._hashes = None

    def __len__(self) -> int:
        return len(self.records)

    def batch(self, indices) -> list[Record]:
        return [self.records[int(i)] for i in indices]

    def scores(self) -> np.ndarray:
        """Each record's score (NaN where it has none), for the resume fingerprint of scored sources."""
        return np.array([np.nan if r.score is None else r.score for r in self.records], dtype=np.float64)

    def hashes(self) -> np.ndarray:
        """(records, 2 + most negatives) uint64: anchor, positive, negatives; 0 where a record has fewer."""
        if self._hashes is None or len(self._hashes) != len(self.records):
            width = 2 + max((len(r.negatives) for r in self.records), default=0)
            out = np.zeros((len(self.records), width), dtype=np.uint64)
            out[:, 0] = hash_texts(r.anchor for r in self.records)
            out[:, 1] = hash_texts(r.positive for r in self.records)
            for i, r in enumerate(self.records):
                if r.negatives:
                    out[i, 2:2 + len(r.negatives)] = hash_texts(r.negatives)
            self._hashes = out
        return self._hashes

    def sample(self, limit: int, seed: int = 0) -> None:
        """Keep a fixed-seed sample of ``limit`` records (counted as skipped)."""
        if len(self.records) > limit:
            random.Random(seed).shuffle(self.records)
            self.skipped["over max_records (fixed-seed sample kept)"] += len(self.records) - limit
            del self.records[limit:]
            self._hashes = None

    def drop_overlapping(self, banned: np.ndarray) -> tuple[int, int]:
        """Drop records whose anchor or positive hash is in ``banned`` (sorted), and such negatives;
        returns (records dropped, negatives removed)."""
        h = self.hashes()
        hit = np.isin(h, banned) & (h != 0)
        drop = hit[:, 0] | hit[:, 1]
        removed = 0
        kept = []
        for i, r in enumerate(self.records):
            if drop[i]:
                continue
            if hit[i, 2:].any():
                clean = [n for j, n in enumerate(r.negatives) if not hit[i, 2 + j]]
                removed += len(r.negatives) - len(clean)
                r.negatives = clean
            kept.append(r)
        self.records = kept
        self._hashes = None
        if drop.any():
            self.skipped["overlaps an evaluation text"] += int(drop.sum())
        return int(drop.sum()), removed


# --- rows -> records ------------------------------------------------------------------------------------------

def detect_kind(columns: set[str], where: str) -> tuple[str, str, str | None, str | None]:
    """(kind, anchor column, positive column, negatives column or score column)."""
    if {"query", "pos"} <= columns and "neg" in columns:
        return "triplet", "query", "pos", "neg"
    for a, p in PAIR_COLUMNS:
        if {a, p} <= columns:
            if (a, p) in (("sentence1", "sentence2"), ("text1", "text2")):
                score = next((c for c in SCORE_COLUMNS if c in columns), None)
                if score:
                    return "scored", a, p, score
            neg = next((c for c in NEG_COLUMNS if c in columns), None)
            return ("triplet" if neg else "pair"), a, p, neg
    known = "; ".join("/".join(pc) for pc in PAIR_COLUMNS)
    raise InputError(f"{where}: cannot tell the record type from columns {sorted(columns)}; expected one of "
                     f"{known} (plus text_neg/negative/neg for hard negatives, label/score for scored pairs)")


def _as_list(value) -> list | None:
    if value is None:
        return []
    if isinstance(value, str):
        if value.startswith("[") and value.endswith("]"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return [value]
        else:
            return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist"):  # numpy / arrow arrays from parquet
        return list(value.tolist())
    return None


def _text_ok(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


class RowParser:
    """Turns rows into records of one kind (detected from the first row's columns), counting every skip."""

    def __init__(self, columns: set[str], where: str, info: SourceInfo) -> None:
        kind, self.a_col, self.p_col, self.x_col = detect_kind(columns, where)
        self.info = info
        info.kind = kind
        info.columns = tuple(c for c in (self.a_col, self.p_col, self.x_col) if c)

    def skip(self, reason: str, no: int) -> None:
        self.info.skipped.add(reason, f"row {no}")

    def parse(self, no: int, row: dict | None) -> list[tuple[str, str, list[str], float | None]]:
        """(anchor, positive, negatives, score) records of one row (a BGE group gives one per positive)."""
        if row is None:
            self.skip(MALFORMED, no)
            return []
        kind = self.info.kind
        anchor, positives = row.get(self.a_col), _as_list(row.get(self.p_col))
        if anchor is None or row.get(self.p_col) is None:
            self.skip("missing field", no)
            return []
        if positives is None or not _text_ok(anchor):
            self.skip("empty or non-text anchor" if not _text_ok(anchor) else "positive is not text", no)
            return []
        positives = [p for p in positives if _text_ok(p)]
        if not positives:
            self.skip("empty positive", no)
            return []
        if kind == "scored":
            try:
                score = float(row.get(self.x_col))
            except (TypeError, ValueError):
                self.skip(f"{self.x_col} is not a number", no)
                return []
            return [(anchor, positives[0], [], score)]
        negatives = []
        if self.x_col:
            raw = _as_list(row.get(self.x_col))
            negatives = [n for n in (raw or []) if _text_ok(n)]
            if raw and len(negatives) < len(raw):
                self.skip("empty negative (negative dropped, row kept)", no)
        out = []
        for pos in positives:
            if pos == anchor:
                self.skip("positive equals anchor", no)
                continue
            negs = [n for n in dict.fromkeys(negatives) if n not in (anchor, pos)]
            if len(negs) < len(negatives):
                self.skip("negative equal to the anchor, the positive or another negative (negative dropped)", no)
            out.append((anchor, pos, negs, None))
        return out


def records_from_rows(rows, name: str, columns: set[str] | None = None, where: str | None = None) -> Source:
    """Rows (line number, dict) -> an in-memory Source; the kind is detected from the first row's columns. A row
    given as None (malformed: too many fields) is skipped and counted."""
    source = Source(name, "pair")
    parser = None
    pending_malformed = []
    for no, row in rows:
        if parser is None:
            if row is None:
                pending_malformed.append(no)
                continue
            parser = RowParser(columns or set(row), where or name, source)
            for bad in pending_malformed:
                parser.skip(MALFORMED, bad)
        source.records.extend(Record(a, p, n, s) for a, p, n, s in parser.parse(no, row))
    if parser is None:
        raise InputError(f"{where or name}: no rows")
    finish_kind(source, source.records, where or name)
    return source


def finish_kind(info: SourceInfo, records, where: str) -> None:
    """A triplet source whose rows had no negatives is a pair source; scored pairs need two distinct scores."""
    if info.kind == "triplet" and not any(r.negatives for r in records):
        info.kind = "pair"
    if info.kind == "scored" and len({r.score for r in records}) < 2:
        raise InputError(f"{where}: scored pairs need at least two distinct scores for CoSENT")


# --- files -> rows (streamed) ---------------------------------------------------------------------------------

def squad_paragraphs(path: Path, encoding: str | None = None) -> Iterator[tuple[str | None, str, list]]:
    """(paragraph id, context, questions) of a SQuAD-format file (CMRC 2018): the one SQuAD reader, for training
    rows and the retrieval tasks alike. A question is kept as written (None or empty too), for callers to count."""
    doc = json_document(path, encoding)
    for article in doc.get("data", []) if isinstance(doc, dict) else []:
        for para in article.get("paragraphs", []):
            pid = para.get("id")
            yield (None if pid is None else str(pid)), para.get("context"), [qa.get("question")
                                                                               for qa in para.get("qas", [])]


def _squad_rows(path: Path, encoding: str) -> Iterator[tuple[int, dict]]:
    """Each question -> the paragraph it was written on."""
    n = 0
    for _pid, context, questions in squad_paragraphs(path, encoding):
        for question in questions:
            n += 1
            yield n, {"query": question, "positive": context}
    if n == 0:
        raise InputError(f"{path}: no SQuAD questions (expected {{'data': [{{'paragraphs': [{{'qas': ...}}]}}]}})")


def _kbqa_rows(path: Path, encoding: str) -> Iterator[tuple[int, dict]]:
    """NLPCC KBQA: 4-line records (<question id=N>, <triple id=N>, <answer id=N>, a '=' rule) -> question and the
    gold triple "subject ||| predicate ||| object"."""
    row: dict = {}
    start = 0
    with open(path, encoding=encoding, newline="") as fh:
        for no, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            tag, _, value = line.partition("\t")
            if tag.startswith("<question"):
                row, start = {"query": value}, no
            elif tag.startswith("<triple"):
                row["positive"] = value
            elif line.startswith("=====") and row:
                yield start, row
                row = {}
    if row:
        yield start, row


PARALLEL_KEYS = {"path", "pairs", "format", "encoding", "columns"}


def check_parallel(spec, where: str) -> None:
    """``parallel: {path, pairs: {this column: other column}, [format, encoding, columns]}``."""
    if (not isinstance(spec, dict) or set(spec) - PARALLEL_KEYS or not isinstance(spec.get("path"), str)
            or not isinstance(spec.get("pairs"), dict) or not spec["pairs"]
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in spec["pairs"].items())):
        raise InputError(f"{where}: parallel takes a mapping with 'path' (the row-aligned file), 'pairs' (this file's "
                         "column: the other file's column, e.g. {sentence1: sentence1}) and optionally format, "
                         "encoding, columns")


def file_rows(path: Path, format: str | None = None, encoding: str | None = None,  # noqa: A002
              columns: list[str] | None = None, rename: dict[str, str] | None = None,
              replace: dict[str, str] | None = None, parallel: dict | None = None) -> Iterator[tuple[int, dict | None]]:
    """(line or row number, row) of a training file, streamed; see :func:`read_source` for the options."""
    if parallel:
        yield from _parallel_rows(path, format, encoding, columns, rename, replace, parallel)
        return
    suffix = f".{format.lower().lstrip('.')}" if format else path.suffix.lower()
    if suffix not in FILE_TYPES and suffix not in TEXT_FORMATS:
        raise InputError(f"{path}: unsupported file type '{suffix}'; use one of "
                         f"{', '.join((*FILE_TYPES, *TEXT_FORMATS))}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    encoding = file_encoding(path, encoding)
    if suffix == ".squad":
        rows = _squad_rows(path, encoding)
    elif suffix == ".kbqa":
        rows = _kbqa_rows(path, encoding)
    else:
        rows = iter_rows(path, suffix, encoding, columns, extra_fields="none")  # malformed rows are counted
    try:
        yield from _clean(rows, rename, replace)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not {encoding} text ({exc.reason} at byte {exc.start}); set the source's encoding "
                         "(e.g. gb18030)") from None


def _parallel_rows(path: Path, format, encoding, columns, rename, replace,  # noqa: A002
                   parallel: dict) -> Iterator[tuple[int, dict | None]]:
    """Two files aligned row by row (a corpus and its translation, Moses/WMT style): row i of ``path`` and row i
    of ``parallel['path']`` give one query -> positive pair per entry of ``pairs``. A different row count is an
    error (the files are not aligned); a malformed row in either file skips the row pair (counted)."""
    from itertools import zip_longest

    check_parallel(parallel, str(path))
    other = Path(parallel["path"])
    mine = file_rows(path, format, encoding, columns, rename, replace)
    theirs = file_rows(other, parallel.get("format") or format, parallel.get("encoding"),
                       parallel.get("columns") or columns, None, replace)
    pairs = parallel["pairs"]
    n, checked = 0, False
    for a, b in zip_longest(mine, theirs):  # items are (number, row) tuples, so None marks the shorter file's end
        if a is None or b is None:
            mine_n = n + (a is not None) + sum(1 for _ in mine)
            theirs_n = n + (b is not None) + sum(1 for _ in theirs)
            raise InputError(f"{path}: {mine_n} rows, but its parallel file {other} has {theirs_n}; parallel "
                             "files must be aligned row by row")
        n += 1
        (no, row), (_, twin) = a, b
        if row is None or twin is None:
            yield no, None
            continue
        if not checked:
            for here, there, have in ((path, list(pairs), row), (other, list(pairs.values()), twin)):
                lost = [c for c in there if c not in have]
                if lost:
                    raise InputError(f"{here}: parallel pairs name column(s) {lost}, which this file does not "
                                     f"have (its columns: {sorted(have)})")
            checked = True
        for here, there in pairs.items():
            yield no, {"query": row[here], "positive": twin[there]}


def _clean(rows, rename: dict[str, str] | None, replace: dict[str, str] | None):
    """Rename columns, apply text replacements, drop stray BOMs (U+FEFF) inside fields."""
    for no, row in rows:
        if row is None:
            yield no, None
            continue
        if rename:
            row = {rename.get(k, k): v for k, v in row.items()}
        if replace or any(isinstance(v, str) and "\ufeff" in v for v in row.values()):
            out = {}
            for k, v in row.items():
                if isinstance(v, str):
                    v = v.replace("\ufeff", "")
                    for old, new in (replace or {}).items():
                        v = v.replace(old, new)
                out[k] = v
            row = out
        yield no, row


def read_source(path: str | Path, name: str | None = None, weight: float = 1.0, instruction: str | None = None,
                doc_instruction: str | None = None, columns: list[str] | None = None,
                rename: dict[str, str] | None = None, max_negatives: int | None = None,
                format: str | None = None, keep_base: float | None = None,  # noqa: A002 - the recipe key
                encoding: str | None = None, replace: dict[str, str] | None = None,
                parallel: dict | None = None) -> Source:
    """One training file -> an in-memory Source. ``format`` overrides the suffix (also ``squad`` for SQuAD JSON
    and ``kbqa`` for NLPCC KBQA records); ``encoding`` declares one (left out: UTF-8, or GB18030 when the file
    starts so, the rule of every reader); ``replace`` rewrites substrings of every text (e.g. a triple's " ||| "
    separators into spaces); ``parallel`` pairs each row with the same row of a translation of the file
    (:func:`_parallel_rows`). Rows that do not fit are skipped and counted.
    For sources of any size use :func:`m3e.data.prepared.prepare_source` (memory-mapped, cached)."""
    path = Path(path)
    rows = file_rows(path, format, encoding, columns, rename, replace, parallel)
    source = records_from_rows(rows, name or path.stem, None, str(path))
    source.weight, source.instruction, source.doc_instruction = weight, instruction, doc_instruction
    source.keep_base = keep_base
    if max_negatives is not None:
        for r in source.records:
            del r.negatives[max_negatives:]
        if not any(r.negatives for r in source.records) and source.kind == "triplet":
            source.kind = "pair"
    return source


def read_sources(path: str | Path, ignored: list[Path] | None = None, **options) -> list[Source]:
    """A file is one source; a folder gives one source per data file below it (the walk of
    :func:`m3e.data.rows.walk_inputs`; other files go to ``ignored``)."""
    return [read_source(f, **options) for f in walk_inputs([path], FILE_TYPES, ignored)]


def source_from_dataset(dataset, name: str = "dataset", **options) -> Source:
    """A Hugging Face ``datasets.Dataset`` (or anything with ``column_names`` and row iteration)."""
    rows = ((i, row) for i, row in enumerate(dataset, 1))
    source = records_from_rows(rows, name, set(getattr(dataset, "column_names", []) or []) or None, name)
    for key, value in options.items():
        setattr(source, key, value)
    return source


def unique_names(sources: list) -> list[str]:
    """Sources that share a name (two ``pairs.jsonl`` in different folders) become ``NAME#1``, ``NAME#2``: every
    report, weight and sampler keys on the name, so two must never merge. Returns the lines that say so."""
    names = [s.name for s in sources]
    said = []
    for i, name in enumerate(names):
        if names.count(name) > 1:
            sources[i].name = f"{name}#{names[:i + 1].count(name)}"
            said.append(f"source {i} ({getattr(sources[i], 'path', None) or name}) is named {sources[i].name}: "
                        f"{names.count(name)} sources are named {name}")
    return said
