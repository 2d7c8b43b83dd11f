"""Task definitions: what a task loads, how it is scored, which prompt each side gets; task selection.

The built-in Chinese tasks live in :mod:`m3e.evaluation.builtin`, tasks from a user's own file in
:mod:`m3e.evaluation.task_files`. Where a task exists in C-MTEB it keeps C-MTEB's name and protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m3e.errors import InputError
from m3e.evaluation.data import load_jsonl_pairs, load_tsv_pairs  # noqa: F401  (public re-export)

TASK_TYPES = ("STS", "PairClassification", "Classification", "Clustering", "Reranking", "Retrieval",
              "BitextMining")
CATEGORIES = ("s2s", "s2p", "p2p", "bitext", "s2c")
MAIN_SCORES = {"STS": "cosine_spearman", "PairClassification": "max_ap", "Classification": "accuracy",
               "Clustering": "v_measure", "Reranking": "map_at_1000", "Retrieval": "ndcg_at_10",
               "BitextMining": "f1"}
# Prompt names per side, by task type: the model's own prompt of that name is used when it has one.
DEFAULT_PROMPTS = {
    "STS": {"sentence1": "query", "sentence2": "query"},
    "PairClassification": {"sentence1": "query", "sentence2": "query"},
    "Classification": {"text": "query"},
    "Clustering": {"text": "query"},
    "Reranking": {"query": "query", "document": "passage"},
    "Retrieval": {"query": "query", "document": "passage"},
    "BitextMining": {"sentence1": "query", "sentence2": "query"},
}


@dataclass
class Task:
    name: str
    type: str  # one of TASK_TYPES
    category: str  # one of CATEGORIES
    description: str
    main_score: str
    load: Callable[[Path], Any]
    prompts: dict[str, str] | None = None
    params: dict[str, Any] = field(default_factory=dict)  # scorer settings (samples_per_label, n_experiments...)
    mteb_name: str | None = None  # the C-MTEB task of the same protocol, for --source hub

    def __post_init__(self) -> None:
        if self.type not in TASK_TYPES:
            raise InputError(f"task {self.name}: unknown type '{self.type}'; use one of {', '.join(TASK_TYPES)}")
        if self.category not in CATEGORIES:
            raise InputError(f"task {self.name}: unknown category '{self.category}'; use one of "
                             f"{', '.join(CATEGORIES)}")
        if self.prompts is None:
            self.prompts = dict(DEFAULT_PROMPTS[self.type])


def _builtin() -> dict[str, Task]:
    from m3e.evaluation.builtin import BUILTIN_TASKS

    return BUILTIN_TASKS


def __getattr__(name: str):  # BUILTIN_TASKS stays importable from here without an import cycle
    if name == "BUILTIN_TASKS":
        return _builtin()
    raise AttributeError(name)


def select_tasks(names: list[str] | None = None, category: str | None = None,
                 task_type: str | None = None) -> list[Task]:
    """Tasks by name (case-insensitive), category or type; everything when none is given."""
    tasks = _builtin()
    if names:
        lookup = {n.lower(): t for n, t in tasks.items()}
        unknown = [n for n in names if n.lower() not in lookup]
        if unknown:
            raise InputError(f"unknown task(s) {', '.join(unknown)}; known tasks: {', '.join(tasks)}")
        return [lookup[n.lower()] for n in names]
    chosen = list(tasks.values())
    if category:
        if category not in CATEGORIES:
            raise InputError(f"unknown category '{category}'; use one of {', '.join(CATEGORIES)}")
        chosen = [t for t in chosen if t.category == category]
    if task_type:
        lookup_type = {t.lower(): t for t in TASK_TYPES}
        if task_type.lower() not in lookup_type:
            raise InputError(f"unknown task type '{task_type}'; use one of {', '.join(TASK_TYPES)}")
        chosen = [t for t in chosen if t.type == lookup_type[task_type.lower()]]
    if not chosen:
        raise InputError(f"no built-in task matches category={category} type={task_type}")
    return chosen
