"""What a task type is: the data it evaluates, how a user's file becomes that data, how it is scored.

Each type lives in its own module of this package and ends with one ``TYPE = TaskType(...)``; the registry in
``__init__`` lists them. Adding a type is one new module plus one registry line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m3e.errors import InputError

# encode(texts, side) -> unit vectors; the side ("query", "document", "text", ...) picks the prompt
Encode = Callable[[list[str], str], np.ndarray]
Records = list[tuple[int, dict]]  # (file line, row) of a user's task file


class TaskRefused(InputError):
    """The data cannot be scored as this type (one class only, empty corpus...); the runner names the task."""


@dataclass(frozen=True)
class TaskType:
    name: str
    main_score: str
    # side -> prompt name; the model's prompt of that name is used when it has one (e5's query/passage convention)
    prompts: dict[str, str]
    category: str  # category of a user's task file of this type
    score: Callable[[Any, Encode, dict], dict[str, float]]  # (data, encode, params) -> scores
    detect: Callable[[set[str], Records], bool] | None = None  # do a task file's fields look like this type?
    from_records: Callable[[Path, Records], Any] | None = None  # a user's task file -> data
    fields: str = ""  # the task-file fields, for error messages and docs


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32), as cosine similarity needs them."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def text_field(path: Path, no: int, row: dict, key: str) -> str:
    """A required non-empty string field of a task-file row."""
    value = row.get(key)
    if value is None:
        raise InputError(f"{path}:{no}: missing field '{key}'")
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path}:{no}: field '{key}' must be a non-empty string")
    return value


def number_field(path: Path, no: int, row: dict, key: str) -> float:
    try:
        return float(row[key])
    except KeyError:
        raise InputError(f"{path}:{no}: missing field '{key}'") from None
    except (TypeError, ValueError):
        raise InputError(f"{path}:{no}: field '{key}' must be a number, found {row[key]!r}") from None
