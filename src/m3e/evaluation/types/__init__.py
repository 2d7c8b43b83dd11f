"""The task types, one module each; this registry is the only list of them.

A new type: a module ending in ``TYPE = TaskType(...)`` (see :mod:`.base`), plus one line below.
"""

from __future__ import annotations

from m3e.errors import InputError
from m3e.evaluation.types import (
    bitext,
    classification,
    clustering,
    pair_classification,
    reranking,
    retrieval,
    sts,
)
from m3e.evaluation.types.base import TaskRefused, TaskType

# display order (summaries, averages)
TYPES: dict[str, TaskType] = {t.name: t for t in (
    sts.TYPE,
    pair_classification.TYPE,
    classification.TYPE,
    clustering.TYPE,
    reranking.TYPE,
    retrieval.TYPE,
    bitext.TYPE,
)}
# a task file's type is the first whose fields match (the most specific field sets first)
DETECT_ORDER = ("STS", "PairClassification", "BitextMining", "Reranking", "Retrieval", "Clustering",
                "Classification")
TASK_TYPES = tuple(TYPES)
MAIN_SCORES = {name: t.main_score for name, t in TYPES.items()}


def task_type(name: str) -> TaskType:
    """The type of that name (case-insensitive), or an error listing the known ones."""
    lookup = {n.lower(): t for n, t in TYPES.items()}
    if name.lower() not in lookup:
        raise InputError(f"unknown task type '{name}'; use one of {', '.join(TYPES)}")
    return lookup[name.lower()]


__all__ = ["TYPES", "TASK_TYPES", "MAIN_SCORES", "DETECT_ORDER", "TaskType", "TaskRefused", "task_type"]
