"""Files and rows: the one folder walk (:func:`walk_inputs`) and the one row reader (:func:`scan_rows`: text lines,
JSON lines, JSON arrays, CSV/TSV, parquet, numbered by file line, with one encoding rule) under bulk encode,
training sources, task files, built-in task data and index builds. Each caller only chooses what a bad row does:
stop the read (:func:`iter_rows`) or be skipped and counted.

Lines are split on newlines only (``str.splitlines`` would also split inside texts holding U+2028 or U+0085,
which real Chinese corpora contain, and misnumber every later line).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import NamedTuple

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
TEXT_TYPE = ".txt"  # one text per line, read as {"text": line}

# Problems a row can have; the caller decides whether one stops the read or is skipped and counted.
EMPTY_LINE = "empty line"
INVALID_JSON = "invalid JSON"
NOT_OBJECT = "not a JSON object"
MALFORMED_CSV = "malformed CSV"
MORE_FIELDS = "more fields than the header has"
FEWER_FIELDS = "fewer fields than the header has"


class Row(NamedTuple):
    """One row as read. ``value`` is None when ``problem`` (a reason to count by) says why it could not be read;
    ``detail`` says exactly what, for the message."""

    no: int  # file line (a CSV row: its first line), JSON array item or parquet row, 1-based
    value: dict | None
    nbytes: int  # input bytes the row stands for (progress)
    problem: str = ""
    detail: str = ""
    item: bool = False  # numbered by JSON array item, not by file line

    def where(self, path) -> str:
        return f"{path}: item {self.no}" if self.item else f"{path}:{self.no}"


def file_encoding(path: Path, encoding: str | None = None) -> str:
    """The declared encoding, or the one rule for files without one (UTF-8 with or without a BOM, else GB18030
    when the file's start is GB18030: :func:`sniff_encoding`)."""
    if encoding:
        try:
            "".encode(encoding)
        except LookupError:
            raise InputError(f"{path}: unknown encoding '{encoding}'") from None
        return encoding
    with _open(path) as fh:
        found = sniff_encoding(fh.read(SNIFF_BYTES))
    return "utf-8-sig" if found == "utf-8" else found


def _open(path: Path, data: bytes | None = None):
    if data is not None:
        return io.BytesIO(data)
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def scan_rows(path: Path, suffix: str | None = None, encoding: str | None = None, columns: list[str] | None = None,
              fields: Collection[str] = (), hint: str = "", data: bytes | None = None) -> Iterator[Row]:
    """Every row of a file, streamed, with its problem instead of an exception: the one reader of txt, jsonl, json
    (JSON lines or one array), csv, tsv and parquet, under every capability. ``suffix`` overrides the file's;
    ``columns`` names a header-less CSV's columns; ``fields`` must exist in a CSV header or parquet schema (the
    error adds ``hint``; parquet reads only those); ``data`` is the file's bytes when they come from elsewhere
    (a zip member). A file that cannot be read at all raises :class:`InputError` naming it."""
    suffix = (suffix or path.suffix).lower()
    if suffix not in (*ROW_TYPES, TEXT_TYPE):
        raise InputError(f"{path}: unsupported row file type '{suffix}'; use one of {', '.join(ROW_TYPES)}")
    if suffix == ".parquet":
        yield from _parquet_rows(path, fields, hint)
        return
    with _open(path, data) as handle:
        head = handle.read(SNIFF_BYTES)
        handle.seek(0)
        encoding = encoding and file_encoding(path, encoding)
        encoding = (encoding or sniff_encoding(head)).lower().replace("_", "-")
        if encoding in ("utf-8-sig", "utf8"):
            encoding = "utf-8"
        if suffix == ".json" and starts_json_array(head[:64]):
            yield from _json_array(path, handle, encoding)
        elif suffix in (".jsonl", ".json"):
            yield from _json_lines(handle, encoding)
        elif suffix == TEXT_TYPE:
            yield from _text_lines(handle, encoding)
        else:
            yield from _csv_rows(path, handle, encoding, "\t" if suffix == ".tsv" else ",", columns, fields, hint)


def _decoded(raw: bytes, no: int, encoding: str) -> tuple[str | None, Row | None]:
    """A line's text, or the row saying it is not in the file's encoding; the UTF-8 BOM of line 1 is dropped."""
    size = len(raw)
    if no == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode(encoding), None
    except UnicodeDecodeError as exc:
        name = {"utf-8": "UTF-8", "gb18030": "GB18030 (as the file's start is)"}.get(encoding, encoding)
        return None, Row(no, None, size, f"not valid {name}", f" (byte {exc.start} of the line)")


def _text_lines(handle, encoding: str) -> Iterator[Row]:
    for no, raw in enumerate(handle, 1):
        line, bad = _decoded(raw, no, encoding)
        if bad:
            yield bad
        elif not line.strip():
            yield Row(no, None, len(raw), EMPTY_LINE)
        else:
            yield Row(no, {"text": line.rstrip("\n").removesuffix("\r")}, len(raw))


def _json_lines(handle, encoding: str) -> Iterator[Row]:
    """orjson parses UTF-8 bytes as they are (the fast path for big files); other encodings are decoded first."""
    import orjson

    utf8 = encoding == "utf-8"
    for no, raw in enumerate(handle, 1):
        size = len(raw)
        if no == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        if not raw.strip():
            yield Row(no, None, size, EMPTY_LINE)
            continue
        if not utf8:
            line, bad = _decoded(raw, no, encoding)
            if bad:
                yield bad
                continue
        try:
            value = orjson.loads(raw if utf8 else line)
        except orjson.JSONDecodeError as exc:
            if utf8:
                _, bad = _decoded(raw, no, encoding)
                if bad:
                    yield bad
                    continue
            yield Row(no, None, size, INVALID_JSON, f" ({exc.msg} at column {exc.colno})")
            continue
        if isinstance(value, dict):
            yield Row(no, value, size)
        else:
            yield Row(no, None, size, NOT_OBJECT, f" (found {type(value).__name__})")


def _json_array(path: Path, handle, encoding: str) -> Iterator[Row]:
    """A .json file holding one JSON array (read whole: JSON lines are for big data); items are numbered."""
    raw = handle.read()
    try:
        items = json.loads(raw.decode(encoding).removeprefix("\ufeff"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid {encoding} (byte {exc.start}); declare the file's encoding") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a JSON array of objects or JSON lines, found {type(items).__name__}")
    size = len(raw) // max(len(items), 1)
    for no, value in enumerate(items, 1):
        if isinstance(value, dict):
            yield Row(no, value, size, item=True)
        else:
            yield Row(no, None, size, NOT_OBJECT, f" (found {type(value).__name__})", item=True)


def _missing(path: Path, where: str, fields: Collection[str], names: list, hint: str) -> None:
    for name in fields:
        if name not in names:
            listed = ", ".join(map(str, names)) or "none"
            raise InputError(f"{path}{where}: no column '{name}' "
                             + (f"in the header ({listed})" if where else f"(columns: {listed})") + hint)


def _csv_rows(path: Path, handle, encoding: str, delimiter: str, columns: list[str] | None,
              fields: Collection[str], hint: str) -> Iterator[Row]:
    """Rows keyed by the header line or ``columns``, numbered by their first line; tab files keep quotes
    literally. A line that is not in the file's encoding is reported and left out of the CSV parse."""
    sizes: list[int] = []
    numbers: list[int] = []
    pending: list[Row] = []

    def text_lines():
        for no, raw in enumerate(handle, 1):
            line, bad = _decoded(raw, no, encoding)
            if bad:
                pending.append(bad)
                continue
            sizes.append(len(raw))
            numbers.append(no)
            yield line

    reader = csv.reader(text_lines(), delimiter=delimiter,
                        quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
    header = columns
    if header is None:
        try:
            header = next(reader)
        except StopIteration:
            yield from pending
            return
        except csv.Error as exc:
            raise InputError(f"{path}:1: malformed header ({exc})") from None
    _missing(path, ":1", fields, header, hint)
    carry = sum(sizes)  # the header's bytes count with the first row
    del sizes[:], numbers[:]
    while True:
        start = len(numbers)
        try:
            cells = next(reader)
        except StopIteration:
            yield from pending
            return
        except csv.Error as exc:
            yield from pending
            pending.clear()
            yield Row(numbers[-1] if numbers else 1, None, sum(sizes[start:]), MALFORMED_CSV, f" ({exc})")
            del sizes[:], numbers[:]
            continue
        yield from pending
        pending.clear()
        no = numbers[start] if start < len(numbers) else numbers[-1]
        size, carry = sum(sizes[start:]) + carry, 0
        del sizes[:], numbers[:]
        if not cells:
            yield Row(no, None, size, EMPTY_LINE)
        elif len(cells) != len(header):
            more = MORE_FIELDS if len(cells) > len(header) else FEWER_FIELDS
            yield Row(no, None, size, more, f" ({len(cells)} vs {len(header)})")
        else:
            yield Row(no, dict(zip(header, cells, strict=True)), size)


def _parquet_rows(path: Path, fields: Collection[str], hint: str) -> Iterator[Row]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise InputError(f"{path}: not a readable parquet file ({exc})") from None
    _missing(path, "", fields, pf.schema_arrow.names, hint)
    size = max(1, path.stat().st_size // max(1, pf.metadata.num_rows))
    no = 0
    for batch in pf.iter_batches(batch_size=8192, columns=list(dict.fromkeys(fields)) or None):
        for value in batch.to_pylist():
            no += 1
            yield Row(no, value, size)


def iter_rows(path: Path, suffix: str | None = None, encoding: str | None = None, columns: list[str] | None = None,
              extra_fields: str = "error", data: bytes | None = None) -> Iterator[tuple[int, dict | None]]:
    """(line or row number, row) of a row file, for readers where a bad row stops the read (training sources, task
    files, built-in task data): blank lines are passed over; a row whose field count differs from the header is
    an error naming its line, or (``extra_fields="none"``) comes as None for a caller that counts such rows."""
    for row in scan_rows(path, suffix, encoding, columns, data=data):
        if not row.problem:
            yield row.no, row.value
        elif row.problem == EMPTY_LINE:
            continue
        elif extra_fields == "none" and row.problem in (MORE_FIELDS, FEWER_FIELDS):
            yield row.no, None
        else:
            hint = "; declare the file's encoding" if row.problem.startswith("not valid") else ""
            raise InputError(f"{row.where(path)}: {row.problem}{row.detail}{hint}")


def json_document(path: Path, encoding: str | None = None):
    """One JSON document read whole (a SQuAD file)."""
    try:
        return json.loads(path.read_text(encoding=file_encoding(path, encoding)))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid {exc.encoding} (byte {exc.start}); declare the file's "
                         "encoding") from None
