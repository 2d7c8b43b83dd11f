"""Texts to embed, streamed from files of any size: txt, jsonl, csv, tsv and parquet, files, folders or globs.

Memory does not grow with the input: files are read line by line (parquet: record batch by record batch).
Every record keeps where it came from (``file:line``, parquet ``file:row``) for its id and for error messages.
A bad row (empty text, missing or non-string field, bytes that are not UTF-8, malformed JSON) stops the read
with ``file:line: what is wrong``, or, with ``skip_bad``, is skipped and counted per reason in a
:class:`SkipReport` that keeps the first examples, never silently.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from m3e.data.rows import SNIFF_BYTES, sniff_encoding, starts_json_array
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


def _starts_array(handle) -> bool:
    head = handle.read(64)
    handle.seek(0)
    return starts_json_array(head)


class Reader:
    """Streams :class:`TextRecord` from files; ``column`` names the text field, ``id_column`` the id field (default:
    ``file:line``)."""

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
        if kind == "parquet":
            yield from self._parquet(path)
            return
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, the generator may stop early
        except FileNotFoundError:
            raise InputError(f"{path}: file not found") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        with handle:
            encoding = sniff_encoding(handle.read(SNIFF_BYTES))
            handle.seek(0)
            if kind == "txt":
                yield from self._txt(path, handle, encoding)
            elif kind == "jsonl" and path.suffix.lower() == ".json" and _starts_array(handle):
                yield from self._json_array(path, handle, encoding)
            elif kind == "jsonl":
                yield from self._jsonl(path, handle, encoding)
            else:
                yield from self._csv(path, handle, encoding, "\t" if kind == "tsv" else ",")

    # ---- helpers -------------------------------------------------------------------------------------------
    def _bad(self, where: str, reason: str, detail: str = "") -> None:
        empty = reason in ("empty line", "empty text")
        if not (self.skip_bad or (empty and self.skip_empty)):
            hint = "--skip-blank or --skip-bad" if empty else "--skip-bad"
            raise InputError(f"{where}: {reason}{detail} (pass {hint} to skip and count such rows)")
        self.report.add(reason, where)

    def _lines(self, path: Path, handle, encoding: str,
               keep_end: bool = False) -> Iterator[tuple[int, str | None, int]]:
        """(line number, text or None when undecodable, bytes) for every line, in the file's encoding (UTF-8, or
        GB18030 when its start is not UTF-8 but is GB18030); the UTF-8 BOM is dropped; the line end is kept with
        ``keep_end`` (CSV fields may span lines)."""
        for no, raw in enumerate(handle, 1):
            size = len(raw)
            if no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                name = "UTF-8" if encoding == "utf-8" else "GB18030 (as the file's start is)"
                self._bad(f"{path}:{no}", f"not valid {name}", f" (byte {exc.start} of the line)")
                yield no, None, size
                continue
            yield no, line if keep_end else line.rstrip("\n").removesuffix("\r"), size

    def _take(self, where: str, no: int, row_id: str, value, nbytes: int, empty: str = "empty text"
              ) -> TextRecord | None:
        if value is None:
            self._bad(where, f"field '{self.column}' is missing or null")
            return None
        if not isinstance(value, str):
            self._bad(where, f"field '{self.column}' is {type(value).__name__}, expected a string")
            return None
        if not value.strip():
            self._bad(where, empty)
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

    # ---- formats -------------------------------------------------------------------------------------------
    def _txt(self, path: Path, handle, encoding: str) -> Iterator[TextRecord]:
        if self.id_column:
            raise InputError(f"{path}: a txt file has no fields, so --id-column does not apply")
        for no, line, size in self._lines(path, handle, encoding):
            if line is None:
                continue
            where = f"{path}:{no}"
            record = self._take(where, no, where, line, size, empty="empty line")
            if record is not None:
                yield record

    def _jsonl(self, path: Path, handle, encoding: str) -> Iterator[TextRecord]:
        for no, line, size in self._lines(path, handle, encoding):
            if line is None:
                continue
            where = f"{path}:{no}"
            if not line.strip():
                self._bad(where, "empty line")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                self._bad(where, "invalid JSON", f" ({exc.msg} at column {exc.colno})")
                continue
            record = self._json_object(where, no, row, size)
            if record is not None:
                yield record

    def _json_array(self, path: Path, handle, encoding: str) -> Iterator[TextRecord]:
        """A .json file holding one JSON array of objects (read whole: use .jsonl for big data); items are
        numbered from 1 where lines would be."""
        raw = handle.read()
        try:
            rows = json.loads(raw.decode(encoding).removeprefix("\ufeff"))
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not valid {encoding} (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a JSON array of objects or JSON lines")
        for no, row in enumerate(rows, 1):
            record = self._json_object(f"{path}: item {no}", no, row, len(raw) // max(len(rows), 1))
            if record is not None:
                yield record

    def _json_object(self, where: str, no: int, row, size: int) -> TextRecord | None:
        if not isinstance(row, dict):
            self._bad(where, "not a JSON object", f" ({type(row).__name__})")
            return None
        if self.column not in row:
            self._bad(where, f"no field '{self.column}'", f" (fields: {', '.join(row) or 'none'}); choose one "
                                                         "with --column")
            return None
        row_id = self._row_id(where, row)
        if row_id is None:
            return None
        return self._take(where, no, row_id, row[self.column], size)

    def _csv(self, path: Path, handle, encoding: str, delimiter: str) -> Iterator[TextRecord]:
        sizes: list[int] = []
        numbers: list[int] = []

        def text_lines():
            for no, line, size in self._lines(path, handle, encoding, keep_end=True):
                if line is None:  # reported as not UTF-8 already
                    continue
                sizes.append(size)
                numbers.append(no)
                yield line

        reader = csv.reader(text_lines(), delimiter=delimiter,
                            quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{path}:1: malformed header ({exc})") from None
        if self.column not in header:
            raise InputError(f"{path}:1: no column '{self.column}' in the header ({', '.join(header)}); choose "
                             "one with --column")
        if self.id_column is not None and self.id_column not in header:
            raise InputError(f"{path}:1: no id column '{self.id_column}' in the header ({', '.join(header)})")
        col = header.index(self.column)
        while True:
            start = len(numbers)
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self._bad(f"{path}:{numbers[-1]}", "malformed CSV", f" ({exc})")
                continue
            no = numbers[start] if start < len(numbers) else numbers[-1]
            size = sum(sizes[start:])
            del sizes[:], numbers[:]
            where = f"{path}:{no}"
            if not fields:  # a blank line
                self._bad(where, "empty line")
                continue
            if len(fields) != len(header):
                more = "more" if len(fields) > len(header) else "fewer"
                self._bad(where, f"{more} fields than the header has", f" ({len(fields)} vs {len(header)})")
                continue
            row = dict(zip(header, fields, strict=True))
            row_id = self._row_id(where, row)
            if row_id is None:
                continue
            record = self._take(where, no, row_id, fields[col], size)
            if record is not None:
                yield record

    def _parquet(self, path: Path) -> Iterator[TextRecord]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
            raise InputError(f"{path}: not a readable parquet file ({exc})") from None
        names = pf.schema_arrow.names
        if self.column not in names:
            raise InputError(f"{path}: no column '{self.column}' (columns: {', '.join(names)}); choose one with "
                             "--column")
        if self.id_column is not None and self.id_column not in names:
            raise InputError(f"{path}: no id column '{self.id_column}' (columns: {', '.join(names)})")
        columns = [self.column] + ([self.id_column] if self.id_column and self.id_column != self.column else [])
        per_row = max(1, path.stat().st_size // max(1, pf.metadata.num_rows))
        row_no = 0
        for batch in pf.iter_batches(batch_size=8192, columns=columns):
            texts = batch.column(self.column).to_pylist()
            ids = batch.column(self.id_column).to_pylist() if self.id_column else None
            for i, value in enumerate(texts):
                row_no += 1
                where = f"{path}:{row_no}"
                if ids is not None:
                    if ids[i] is None:
                        self._bad(where, f"no id in field '{self.id_column}'")
                        continue
                    row_id = str(ids[i])
                else:
                    row_id = where
                record = self._take(where, row_no, row_id, value, per_row)
                if record is not None:
                    yield record
