"""Texts to embed, streamed from files of any size: txt, jsonl, csv, tsv and parquet, files, folders or globs.

Memory does not grow with the input: the one row reader reads line by line (parquet: record batch by record
batch, only the text and id columns).
Every record keeps where it came from (``file:line``, parquet ``file:row``) for its id and for error messages.
A bad row (empty text, missing or non-string field, bytes that are not UTF-8, malformed JSON) stops the read
with ``file:line: what is wrong``, or, with ``skip_bad``, is skipped and counted per reason in a
:class:`SkipReport` that keeps the first examples, never silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from m3e.data.rows import EMPTY_LINE, scan_rows
from m3e.data.skips import SkipReport
from m3e.errors import InputError

SUFFIXES = {".txt": "txt", ".text": "txt", ".md": "txt", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
            ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


@dataclass
class TextRecord:
    id: str
    text: str
    where: str  # file:line (or file:row), for messages
    line: int  # line (parquet: row) number in its file, 1-based
    nbytes: int  # input bytes this record stands for (progress)


def file_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in ("txt", "jsonl", "csv", "tsv", "parquet"):
            raise InputError(f"unknown format '{fmt}' (use txt, jsonl, csv, tsv or parquet)")
        return fmt
    return SUFFIXES.get(path.suffix.lower(), "txt")


class Reader:
    """Streams :class:`TextRecord` from files through the one row reader (:func:`m3e.data.rows.scan_rows`);
    ``column`` names the text field, ``id_column`` the id field (default: ``file:line``). What a bad row does is
    decided here: stop with ``file:line: what is wrong``, or be skipped and counted."""

    def __init__(self, column: str = "text", id_column: str | None = None, fmt: str | None = None,
                 skip_bad: bool = False, report: SkipReport | None = None, skip_empty: bool = False) -> None:
        self.column, self.id_column, self.fmt = column, id_column, fmt
        self.skip_bad = skip_bad  # every kind of bad row is skipped and counted
        self.skip_empty = skip_empty or skip_bad  # empty texts and lines only (the rest still stops the read)
        self.report = report if report is not None else SkipReport()

    def records(self, files: list[Path]) -> Iterator[TextRecord]:
        for path in files:
            yield from self.file_records(path)

    def file_records(self, path: Path) -> Iterator[TextRecord]:
        kind = file_format(path, self.fmt)
        if kind == "txt":
            if self.id_column:
                raise InputError(f"{path}: a txt file has no fields, so --id-column does not apply")
            column, fields = "text", []
        else:
            column = self.column
            fields = [] if kind == "jsonl" else [self.column, *([self.id_column] if self.id_column else [])]
        suffix = ".json" if kind == "jsonl" and path.suffix.lower() == ".json" else f".{kind}"
        for row in scan_rows(path, suffix, fields=fields, hint="; choose one with --column"):
            where = row.where(path)
            if row.problem:
                self._bad(where, row.problem, row.detail)
                continue
            value = row.value
            if column not in value:
                self._bad(where, f"no field '{column}'", f" (fields: {', '.join(value) or 'none'}); choose one "
                                                         "with --column")
                continue
            row_id = where if kind == "txt" else self._row_id(where, value)
            if row_id is not None:
                record = self._take(where, row.no, row_id, value[column], row.nbytes)
                if record is not None:
                    yield record

    def _bad(self, where: str, reason: str, detail: str = "") -> None:
        empty = reason in (EMPTY_LINE, "empty text")
        if not (self.skip_bad or (empty and self.skip_empty)):
            hint = "--skip-blank or --skip-bad" if empty else "--skip-bad"
            raise InputError(f"{where}: {reason}{detail} (pass {hint} to skip and count such rows)")
        self.report.add(reason, where)

    def _take(self, where: str, no: int, row_id: str, value, nbytes: int) -> TextRecord | None:
        if value is None:
            self._bad(where, f"field '{self.column}' is missing or null")
            return None
        if not isinstance(value, str):
            self._bad(where, f"field '{self.column}' is {type(value).__name__}, expected a string")
            return None
        if not value.strip():
            self._bad(where, "empty text")
            return None
        return TextRecord(row_id, value, where, no, nbytes)

    def _row_id(self, where: str, row: dict) -> str | None:
        if self.id_column is None:
            return where
        value = row.get(self.id_column)
        if value is None or (isinstance(value, str) and not value.strip()):
            self._bad(where, f"no id in field '{self.id_column}'")
            return None
        return str(value)
