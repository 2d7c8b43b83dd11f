"""Rows of JSON-lines and CSV/TSV text, numbered by file line: the one reader every file format goes through.

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


def jsonl_objects(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    for no, line in numbered_lines(text):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{no}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{no}: expected a JSON object, found {type(row).__name__}")
        yield no, row


def csv_dicts(path: Path, text: str, delimiter: str = ",", columns: list[str] | None = None,
              ) -> Iterator[tuple[int, dict]]:
    """Rows as dicts (header line, or ``columns`` for header-less files); tab files keep quotes literally."""
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter, fieldnames=columns,
                            quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
    if not reader.fieldnames:
        raise InputError(f"{path}: empty file, expected a header line")
    for row in reader:
        if None in row:
            raise InputError(f"{path}:{reader.line_num}: more fields than the {len(reader.fieldnames)} columns")
        yield reader.line_num, row
