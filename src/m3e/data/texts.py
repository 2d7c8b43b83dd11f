"""Read texts to embed from txt, jsonl, csv or tsv files.

Every problem names the file and line, and nothing is dropped silently: a blank line in a txt file is
an error unless the caller asks to skip blanks, in which case the count of skipped lines is returned.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from m3e.data.rows import jsonl_objects
from m3e.errors import InputError

FORMATS = ("txt", "jsonl", "csv", "tsv")


@dataclass
class TextFile:
    texts: list[str]
    lines: list[int]  # 1-based source line of each text
    skipped_blank: int = 0


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("json", "ndjson"):
        suffix = "jsonl"
    if suffix in FORMATS:
        return suffix
    return "txt"


def read_texts(path: str | Path, column: str = "text", fmt: str | None = None,
               skip_blank: bool = False) -> TextFile:
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise InputError(f"{path}: unknown format '{fmt}' (use one of {', '.join(FORMATS)})")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    if fmt == "txt":
        return _from_lines(path, content, skip_blank)
    if fmt == "jsonl":
        return _from_jsonl(path, content, column, skip_blank)
    return _from_csv(path, content, column, "\t" if fmt == "tsv" else ",", skip_blank)


def _from_lines(path: Path, content: str, skip_blank: bool) -> TextFile:
    out = TextFile([], [])
    for no, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            if skip_blank:
                out.skipped_blank += 1
                continue
            raise InputError(f"{path}:{no}: empty line (pass --skip-blank to skip empty lines)")
        out.texts.append(line)
        out.lines.append(no)
    return out


def _take(path: Path, no: int, value: object, column: str, out: TextFile, skip_blank: bool) -> None:
    if value is None:
        raise InputError(f"{path}:{no}: field '{column}' is missing or null")
    if not isinstance(value, str):
        raise InputError(f"{path}:{no}: field '{column}' is {type(value).__name__}, expected a string")
    if not value.strip():
        if skip_blank:
            out.skipped_blank += 1
            return
        raise InputError(f"{path}:{no}: field '{column}' is empty (pass --skip-blank to skip)")
    out.texts.append(value)
    out.lines.append(no)


def _from_jsonl(path: Path, content: str, column: str, skip_blank: bool) -> TextFile:
    out = TextFile([], [])
    for no, record in jsonl_objects(path, content):
        if column not in record:
            keys = ", ".join(record) or "none"
            raise InputError(f"{path}:{no}: no field '{column}' (fields: {keys}); choose one with --column")
        _take(path, no, record[column], column, out, skip_blank)
    return out


def _from_csv(path: Path, content: str, column: str, delimiter: str, skip_blank: bool) -> TextFile:
    out = TextFile([], [])
    reader = csv.DictReader(content.splitlines(), delimiter=delimiter)
    if reader.fieldnames is None:
        return out
    if column not in reader.fieldnames:
        raise InputError(
            f"{path}:1: no column '{column}' in the header ({', '.join(reader.fieldnames)}); "
            "choose one with --column"
        )
    try:
        for row in reader:
            no = reader.line_num
            if None in row:
                raise InputError(f"{path}:{no}: more fields than the header has")
            _take(path, no, row[column], column, out, skip_blank)
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return out
