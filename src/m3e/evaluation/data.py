"""File readers the built-in tasks and users' task files share: every problem names file and line.

What each task type evaluates on (its data class) lives with the type in :mod:`m3e.evaluation.types`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from m3e.data.rows import file_encoding, iter_rows, json_document, numbered_lines
from m3e.errors import InputError


def need(path: Path) -> Path:
    if not path.is_file():
        raise InputError(
            f"missing data file {path} (dataset folder {path.parent}); point --data-dir or $M3E_DATA_DIR at "
            "the folder that holds the dataset folders"
        )
    return path


def read_text(path: Path) -> str:
    """A whole text file, UTF-8 or GB18030 by the rule every reader uses."""
    encoding = file_encoding(need(path))
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not {encoding} text ({exc.reason} at byte {exc.start})") from None


def read_json(path: Path):
    """One JSON document (a SQuAD file, a JSON array of rows)."""
    return json_document(need(path))


def lines(path: Path) -> list[tuple[int, str]]:
    return list(numbered_lines(read_text(path)))


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """JSON lines, or one JSON array of objects (the one meaning of .json)."""
    return iter_rows(need(path), ".json")


def csv_rows(path: Path, text: str | None = None, delimiter: str = ",",
             columns: list[str] | None = None) -> Iterator[tuple[int, dict]]:
    """Rows of a CSV/TSV (or of ``text`` read from it, e.g. inside a zip) as dicts, keyed by its header line or by
    ``columns`` for a header-less file; the number is the file line the row starts on."""
    suffix = ".tsv" if delimiter == "\t" else ".csv"
    if text is not None:
        return iter_rows(path, suffix, "utf-8", columns, data=text.encode("utf-8"))
    return iter_rows(need(path), suffix, columns=columns)


def field_text(path: Path, no: int, row: dict, key: str) -> str:
    if key not in row or row[key] is None:
        raise InputError(f"{path}:{no}: missing field '{key}'")
    value = row[key]
    if not isinstance(value, str):
        raise InputError(f"{path}:{no}: field '{key}' must be a string, found {type(value).__name__}")
    return value
