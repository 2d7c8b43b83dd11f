"""Documents to index from files and folders: txt and md (one document per file), and rows of jsonl, json, csv, tsv
and parquet (a text column, the rest metadata).

Nothing is dropped silently: unreadable, binary and undecodable files are skipped and listed in
:class:`ReadReport` with their path and reason; rows without text are counted by file and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from m3e.data.rows import EMPTY_LINE, SNIFF_BYTES, scan_rows, sniff_encoding, walk_inputs
from m3e.data.skips import SkipReport
from m3e.errors import InputError

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text", ".rst"}
ROW_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet"}
SUFFIXES = TEXT_SUFFIXES | ROW_SUFFIXES


@dataclass
class Document:
    source: str  # absolute file path
    text: str
    doc_id: str
    metadata: dict = field(default_factory=dict)
    line: int | None = None  # row files: the row's line


@dataclass
class ReadReport:
    files: int = 0
    documents: int = 0
    skipped_files: SkipReport = field(default_factory=SkipReport)  # reason -> files, with their paths
    skipped_rows: SkipReport = field(default_factory=SkipReport)  # reason -> rows, with path:line

    def lines(self) -> list[str]:
        return self.skipped_files.lines("file(s)") + self.skipped_rows.lines("row(s)")


def _files(paths: list, report: ReadReport) -> list[Path]:
    """The shared folder walk; other files found in folders are listed as skipped, an explicit file of another
    type is refused."""
    ignored: list[Path] = []
    found = walk_inputs(paths, SUFFIXES, ignored)
    for f in ignored:
        report.skipped_files.add(f"unsupported type '{f.suffix or 'no suffix'}'", f)
    for p in found:
        if p.suffix.lower() not in SUFFIXES:
            raise InputError(f"{p}: unsupported file type '{p.suffix}'; use {', '.join(sorted(SUFFIXES))}")
    return found


def _binary(path: Path, report: ReadReport) -> bool | None:
    """Whether a text file is binary (NUL bytes at its start), None when it cannot be read; both are listed."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        report.skipped_files.add(f"unreadable ({exc.strerror or exc})", path)
        return None
    if b"\x00" in head:
        report.skipped_files.add("binary file (NUL bytes)", path)
        return True
    return False


def _decode(path: Path, report: ReadReport) -> str | None:
    raw = path.read_bytes()
    encoding = sniff_encoding(raw[:SNIFF_BYTES])
    try:
        return raw.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        report.skipped_files.add("not UTF-8 or GB18030 text", f"{path} (byte {exc.start})")
        return None


def _rows(path: Path, report: ReadReport, text_field: str) -> Iterator[tuple[int, dict]]:
    """Rows through the one row reader, streamed: lines in neither encoding are skipped and counted, blank lines
    passed over, and any other bad row stops the build with its file and line."""
    for row in scan_rows(path, fields=[text_field] if path.suffix.lower() in (".csv", ".tsv", ".parquet") else (),
                         hint="; choose one with --text-field"):
        if row.problem.startswith("not valid"):
            report.skipped_rows.add("not UTF-8 or GB18030 text", row.where(path))
        elif row.problem and row.problem != EMPTY_LINE:
            raise InputError(f"{row.where(path)}: {row.problem}{row.detail}")
        elif not row.problem:
            yield row.no, row.value


def iter_documents(paths: list[str | Path], report: ReadReport, text_field: str = "text",
                   id_field: str = "id") -> Iterator[Document]:
    """Every document under ``paths``; a plain text file is one document (read whole), a row file one per row
    (streamed). ``report`` counts files, documents and what was skipped as the documents stream by."""
    for path in _files(paths, report):
        suffix = path.suffix.lower()
        if suffix != ".parquet" and _binary(path, report) is not False:
            continue
        if suffix in TEXT_SUFFIXES:
            text = _decode(path, report)
            if text is None:
                continue
            report.files += 1
            if text.strip():
                report.documents += 1
                yield Document(str(path.resolve()), text, str(path), {})
            else:
                report.skipped_rows.add("no text", f"{path}:1")
            continue
        report.files += 1
        for no, row in _rows(path, report, text_field):
            if text_field not in row:
                raise InputError(f"{path}:{no}: no '{text_field}' field (fields: {', '.join(map(str, row))}); "
                                 "choose one with --text-field")
            value = row[text_field]
            if not isinstance(value, str):
                raise InputError(f"{path}:{no}: field '{text_field}' is {type(value).__name__}, expected text")
            if not value.strip():
                report.skipped_rows.add("no text", f"{path}:{no}")
                continue
            meta = {k: v for k, v in row.items() if k not in (text_field,)}
            doc_id = str(row.get(id_field) if row.get(id_field) not in (None, "") else f"{path}:{no}")
            report.documents += 1
            yield Document(str(path.resolve()), value, doc_id, meta, no)

