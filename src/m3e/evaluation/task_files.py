"""Tasks from a user's own file (``m3e eval --task-file``): jsonl, json, csv, tsv or parquet, the type read from
the fields.

Each type's fields and reader live with the type (:mod:`m3e.evaluation.types`); see docs/evaluation.md.
"""

from __future__ import annotations

from pathlib import Path

from m3e.data.rows import ROW_TYPES, iter_rows
from m3e.errors import InputError
from m3e.evaluation.tasks import Task
from m3e.evaluation.types import DETECT_ORDER, TYPES, task_type


def read_records(path: Path) -> list[tuple[int, dict]]:
    """The task file's rows, read by the reader training and index builds use (same formats, same encodings)."""
    if not path.is_file():
        raise InputError(f"task file {path} does not exist")
    if path.suffix.lower() not in ROW_TYPES:
        raise InputError(f"{path}: unsupported task file type '{path.suffix}'; use {', '.join(ROW_TYPES)}")
    return list(iter_rows(path))


def detect_type(path: Path, records: list[tuple[int, dict]]) -> str:
    keys = set(records[0][1])
    for name in DETECT_ORDER:
        if TYPES[name].detect(keys, records):
            return name
    formats = "; ".join(f"{t.name}: {t.fields}" for t in TYPES.values())
    raise InputError(f"{path}: cannot tell the task type from fields {sorted(keys)} (formats: {formats}); "
                     "or pass --task-type")


def task_from_file(path: Path, type_name: str | None = None, name: str | None = None) -> Task:
    """A Task over ``path``; the file is read once now so format errors surface before any model loads."""
    records = read_records(path)
    if not records:
        raise InputError(f"{path}: no records")
    kind = task_type(type_name) if type_name else TYPES[detect_type(path, records)]
    data = kind.from_records(path, records)
    return Task(name or path.stem, kind.name, kind.category, f"{kind.name} task from {path.name}", kind.main_score,
                lambda root: data)
