"""Files and rows: the one folder walk and the one row reader (JSON lines, JSON arrays, CSV/TSV, parquet, numbered
by file line) that training, task files and index builds share; bulk encode streams texts through the same
encoding and .json rules (:mod:`m3e.data.streams`).

Lines are split on newlines only (``str.splitlines`` would also split inside texts holding U+2028 or U+0085,
which real Chinese corpora contain, and misnumber every later line).
"""

from __future__ import annotations

import csv
import glob
import json
import os
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from m3e.errors import InputError

SNIFF_BYTES = 1 << 16


def sniff_encoding(head: bytes) -> str:
    """``utf-8`` or ``gb18030`` for a file that starts with ``head`` (its first bytes; a character cut at the end
    is allowed): the one rule for files without a declared encoding, so a GBK file reads the same everywhere."""
    cut = ("unexpected end of data", "incomplete multibyte sequence")
    for encoding in ("utf-8", "gb18030"):
        try:
            head.decode(encoding)
            return encoding
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3 and exc.reason in cut:
                return encoding
    return "utf-8"  # neither: the reader reports the first bad line as not UTF-8


def starts_json_array(head: bytes) -> bool:
    """Whether a .json file that starts with ``head`` is one JSON array (else JSON lines): the one rule for
    what .json means, for every reader."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def walk_inputs(inputs: list[str | os.PathLike[str]], suffixes: Collection[str],
                ignored: list[Path] | None = None) -> list[Path]:
    """Files, folders and glob patterns -> an ordered list of distinct files: the one folder walk of every reader
    (bulk encode, training sources, index build). A folder gives every file below it (recursive, sorted, hidden
    names skipped) whose suffix is in ``suffixes``; its other files are appended to ``ignored`` so the caller
    reports them (never dropped silently). A file named explicitly is kept whatever its suffix: its reader
    decides, with an error that names it."""
    files: list[Path] = []
    for item in inputs:
        text = os.path.expanduser(str(item))
        if any(c in text for c in "*?[") and not Path(text).exists():
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise InputError(f"{text}: the pattern matches no file")
            files += [Path(m) for m in matches if Path(m).is_file()]
            continue
        path = Path(text)
        if path.is_dir():
            every = sorted(p for p in path.rglob("*")
                           if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
            found = [p for p in every if p.suffix.lower() in suffixes]
            if ignored is not None:
                ignored += [p for p in every if p.suffix.lower() not in suffixes]
            if not found:
                raise InputError(f"{path}: no {', '.join(sorted(set(suffixes)))} files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def ignored_line(ignored: list[Path], suffixes: Collection[str]) -> str:
    """One line for the files a folder walk left out, by type."""
    kinds = Counter(p.suffix.lower() or "(no suffix)" for p in ignored)
    listed = ", ".join(f"{k}: {n}" for k, n in kinds.most_common())
    return (f"ignored {len(ignored)} file(s) of types that are not {', '.join(sorted(set(suffixes)))} ({listed}); "
            f"first: {ignored[0]}")


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers."""
    for no, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if line.strip():
            yield no, line


ROW_TYPES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


def file_encoding(path: Path, encoding: str | None = None) -> str:
    """The declared encoding, or the one rule for files without one (UTF-8 with or without a BOM, else GB18030
    when the file's start is GB18030: :func:`sniff_encoding`)."""
    if encoding:
        try:
            "".encode(encoding)
        except LookupError:
            raise InputError(f"{path}: unknown encoding '{encoding}'") from None
        return encoding
    with open(path, "rb") as fh:
        found = sniff_encoding(fh.read(SNIFF_BYTES))
    return "utf-8-sig" if found == "utf-8" else found


def json_lines(path: Path, lines: Iterable[str | bytes], encoding: str = "utf-8") -> Iterator[tuple[int, dict]]:
    """(line number, object) of JSON lines; ``lines`` are str, or bytes in ``encoding`` (orjson parses UTF-8 bytes
    as they are: the fast path for big training files). Blank lines are skipped, numbers still count them."""
    import orjson

    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf-8-sig", "utf8")
    for no, line in enumerate(lines, 1):
        if no == 1:
            line = line.removeprefix(b"\xef\xbb\xbf") if isinstance(line, bytes) else line.removeprefix("\ufeff")
        if not line.strip():
            continue
        try:
            row = orjson.loads(line if utf8 or isinstance(line, str) else line.decode(encoding))
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{path}:{no}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}:{no}: not {encoding} text ({exc.reason})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{no}: expected a JSON object, found {type(row).__name__}")
        yield no, row


def json_document(path: Path, encoding: str | None = None):
    """One JSON document read whole (an array of rows, a SQuAD file)."""
    try:
        return json.loads(path.read_text(encoding=file_encoding(path, encoding)))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def csv_rows(path: Path, lines: Iterable[str], delimiter: str = ",", columns: list[str] | None = None,
             extra_fields: str = "error") -> Iterator[tuple[int, dict | None]]:
    """(line the row ends on, row) keyed by the header line or ``columns``; tab files keep quotes literally. A row
    with more fields than columns is an error naming its line, or (``extra_fields="none"``) comes as None for a
    caller that counts malformed rows."""
    reader = csv.DictReader(lines, delimiter=delimiter, fieldnames=columns,
                            quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
    if not reader.fieldnames:
        raise InputError(f"{path}: empty file, expected a header line")
    try:
        for row in reader:
            if None in row:
                if extra_fields == "error":
                    raise InputError(f"{path}:{reader.line_num}: more fields than the {len(reader.fieldnames)} "
                                     "columns")
                row = None
            yield reader.line_num, row
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    no = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
        for row in batch.to_pylist():
            no += 1
            yield no, row


def iter_rows(path: Path, suffix: str | None = None, encoding: str | None = None, columns: list[str] | None = None,
              extra_fields: str = "error") -> Iterator[tuple[int, dict | None]]:
    """(line or row number, row) of a row file, streamed: the one reader of jsonl, json (JSON lines or one array),
    csv, tsv and parquet for training sources, task files and index builds. ``suffix`` overrides the file's."""
    suffix = (suffix or path.suffix).lower()
    if suffix not in ROW_TYPES:
        raise InputError(f"{path}: unsupported row file type '{suffix}'; use one of {', '.join(ROW_TYPES)}")
    if suffix == ".parquet":
        yield from parquet_rows(path)
        return
    encoding = file_encoding(path, encoding)
    if suffix == ".json":
        with open(path, "rb") as fh:
            array = starts_json_array(fh.read(64))
        if array:
            for i, row in enumerate(json_document(path, encoding), 1):
                if not isinstance(row, dict):
                    raise InputError(f"{path}: item {i} is not an object")
                yield i, row
            return
    if suffix in (".jsonl", ".json"):
        with open(path, "rb") as fh:
            yield from json_lines(path, fh, encoding)
        return
    try:
        with open(path, encoding=encoding, newline="") as fh:
            yield from csv_rows(path, fh, "\t" if suffix == ".tsv" else ",", columns, extra_fields)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not {encoding} text ({exc.reason} at byte {exc.start}); declare the file's "
                         "encoding (e.g. gb18030)") from None
