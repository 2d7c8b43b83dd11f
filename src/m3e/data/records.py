"""Training records from files, folders and Hugging Face datasets: one source per file, type read from columns.

Record kinds (the M3E / uniem / BGE formats, with aliases):

- ``pair``: anchor + positive. Columns ``text/text_pos``, ``query/positive``, ``anchor/positive``,
  ``query/pos`` (a string), ``instruction/output`` (uniem's instruction data), ``sentence1/sentence2`` or
  ``text1/text2`` (without a label or score).
- ``triplet``: a pair plus hard negatives. ``text_neg``, ``negative``, or BGE's ``{"query", "pos": [...],
  "neg": [...]}`` (each positive becomes a record with the query's negatives).
- ``scored``: ``sentence1, sentence2`` (or ``text1, text2``) with ``label`` or ``score`` (CoSENT).

Files without a header (tsv/csv) take ``columns=[...]``; ``rename={"old": "new"}`` maps other names onto these.

Extra columns are ignored. Each source reports what was detected, how many records it gave and how many rows
were skipped and why (empty text, missing field); nothing is dropped silently.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from m3e.data.rows import csv_dicts, jsonl_objects
from m3e.errors import InputError

FILE_TYPES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")

PAIR_COLUMNS = [("text", "text_pos"), ("query", "positive"), ("anchor", "positive"), ("query", "pos"),
                ("instruction", "output"), ("sentence1", "sentence2"), ("text1", "text2")]
NEG_COLUMNS = ("text_neg", "negative", "neg", "negatives", "hard_negative")
SCORE_COLUMNS = ("label", "score")


@dataclass
class Record:
    anchor: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    score: float | None = None  # scored pairs only


@dataclass
class Source:
    """One dataset: its records, how to prompt them, how often to draw from it."""

    name: str
    kind: str  # pair | triplet | scored
    records: list[Record]
    weight: float = 1.0
    instruction: str | None = None  # anchor prefix: a literal string or one of the model's prompt names
    doc_instruction: str | None = None  # prefix for positives and negatives
    keep_base: float | None = None  # this source's weight of the drift term (None: the run's TrainConfig.keep_base)
    skipped: Counter = field(default_factory=Counter)
    first_skip: dict[str, int] = field(default_factory=dict)  # reason -> first line (row) it happened on
    columns: tuple[str, ...] = ()

    def report(self) -> str:
        skipped = ", ".join(f"{n} {why}" + (f" (first at row {self.first_skip[why]})" if why in self.first_skip
                                             else "") for why, n in self.skipped.most_common()) or "none"
        return (f"{self.name}: {self.kind} records from columns {', '.join(self.columns)}; {len(self.records)} used, "
                f"skipped: {skipped}")


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


def records_from_rows(rows, name: str, columns: set[str] | None = None, where: str | None = None) -> Source:
    """Rows (line number, dict) -> a Source; the kind is detected from the first row's columns."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        raise InputError(f"{where or name}: no rows")
    kind, a_col, p_col, x_col = detect_kind(columns or set(first[1]), where or name)
    source = Source(name, kind, [], columns=tuple(c for c in (a_col, p_col, x_col) if c))

    def text_ok(value) -> bool:
        return isinstance(value, str) and bool(value.strip())

    def skip(reason: str, no: int) -> None:
        source.skipped[reason] += 1
        source.first_skip.setdefault(reason, no)

    for no, row in [first, *rows]:
        anchor, positives = row.get(a_col), _as_list(row.get(p_col))
        if anchor is None or row.get(p_col) is None:
            skip("missing field", no)
            continue
        if positives is None or not text_ok(anchor):
            skip("empty or non-text anchor" if not text_ok(anchor) else "positive is not text", no)
            continue
        positives = [p for p in positives if text_ok(p)]
        if not positives:
            skip("empty positive", no)
            continue
        if kind == "scored":
            try:
                score = float(row.get(x_col))
            except (TypeError, ValueError):
                skip(f"{x_col} is not a number", no)
                continue
            source.records.append(Record(anchor, positives[0], score=score))
            continue
        negatives = []
        if x_col:
            raw = _as_list(row.get(x_col))
            negatives = [n for n in (raw or []) if text_ok(n)]
            if raw and len(negatives) < len(raw):
                skip("empty negative (negative dropped, row kept)", no)
        for pos in positives:
            if pos == anchor:
                skip("positive equals anchor", no)
                continue
            negs = [n for n in dict.fromkeys(negatives) if n not in (anchor, pos)]
            if len(negs) < len(negatives):
                skip("negative equal to the anchor, the positive or another negative (negative dropped)", no)
            source.records.append(Record(anchor, pos, negs))
    if kind == "triplet" and not any(r.negatives for r in source.records):
        source.kind = "pair"
    if kind == "scored" and len({r.score for r in source.records}) < 2:
        raise InputError(f"{where or name}: scored pairs need at least two distinct scores for CoSENT")
    return source


def _jsonl(path: Path, text: str):
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        for i, row in enumerate(data, 1):
            if not isinstance(row, dict):
                raise InputError(f"{path}: item {i} is not an object")
            yield i, row
        return
    yield from jsonl_objects(path, text)


def read_source(path: str | Path, name: str | None = None, weight: float = 1.0, instruction: str | None = None,
                doc_instruction: str | None = None, columns: list[str] | None = None,
                rename: dict[str, str] | None = None, max_negatives: int | None = None,
                format: str | None = None, keep_base: float | None = None) -> Source:  # noqa: A002 - the recipe key
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    suffix = f".{format.lower().lstrip('.')}" if format else path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise InputError(f"{path}: unsupported file type '{suffix}'; use one of {', '.join(FILE_TYPES)}")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        rows = ((i, row) for i, row in enumerate(table.to_pylist(), 1))
        source = records_from_rows(rows, name or path.stem, set(table.column_names), str(path))
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if suffix in (".jsonl", ".json"):
            rows = _jsonl(path, text)
        else:
            rows = csv_dicts(path, text, "\t" if suffix == ".tsv" else ",", columns)
        if rename:
            rows = ((no, {rename.get(k, k): v for k, v in row.items()}) for no, row in rows)
        source = records_from_rows(rows, name or path.stem, None, str(path))
    source.weight, source.instruction, source.doc_instruction = weight, instruction, doc_instruction
    source.keep_base = keep_base
    if max_negatives is not None:
        for r in source.records:
            del r.negatives[max_negatives:]
        if not any(r.negatives for r in source.records) and source.kind == "triplet":
            source.kind = "pair"
    return source


def read_sources(path: str | Path, **options) -> list[Source]:
    """A file is one source; a folder gives one source per data file in it (sorted, not recursive)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FILE_TYPES)
        if not files:
            raise InputError(f"{path}: no data files ({', '.join(FILE_TYPES)}) in this folder")
        return [read_source(f, **options) for f in files]
    return [read_source(path, **options)]


def source_from_dataset(dataset, name: str = "dataset", **options) -> Source:
    """A Hugging Face ``datasets.Dataset`` (or anything with ``column_names`` and row iteration)."""
    rows = ((i, row) for i, row in enumerate(dataset, 1))
    source = records_from_rows(rows, name, set(getattr(dataset, "column_names", []) or []) or None, name)
    for key, value in options.items():
        setattr(source, key, value)
    return source
