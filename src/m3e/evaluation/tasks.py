"""What a task is: its data loader, its type (how it is scored), its category and the prompt of each side.

Task types live in :mod:`m3e.evaluation.types`, the built-in Chinese tasks in :mod:`m3e.evaluation.builtin`,
tasks from a user's own file in :mod:`m3e.evaluation.task_files`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m3e.errors import InputError
from m3e.evaluation.types import TYPES, TaskType

CATEGORIES = ("s2s", "s2p", "p2p", "bitext", "s2c")
# language of a task's texts -> its name in summaries; "zh-en": one side Chinese, the other English
LANGUAGES = {"zh": "Chinese", "en": "English", "zh-en": "cross-lingual"}
# test: reported scores; validation: for choosing checkpoints and settings, never reported as a test score
SPLITS = ("test", "validation")


@dataclass
class Task:
    name: str
    type: str  # a name in m3e.evaluation.types.TYPES
    category: str  # one of CATEGORIES
    description: str
    main_score: str
    load: Callable[[Path], Any]
    # side -> prompt name. Left out: the type's conventional names (query/passage), used where the model has
    # them; given: every name must be one of the model's prompts.
    prompts: dict[str, str] | None = None
    params: dict[str, Any] = field(default_factory=dict)  # scorer settings (samples_per_label, n_experiments...)
    mteb_name: str | None = None  # the C-MTEB task of the same protocol, for --source hub
    prompts_optional: bool = False  # set when the type's conventional names stand in for prompts
    language: str = "zh"  # a key of LANGUAGES
    split: str = "test"  # one of SPLITS

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise InputError(f"task {self.name}: unknown type '{self.type}'; use one of {', '.join(TYPES)}")
        if self.category not in CATEGORIES:
            raise InputError(f"task {self.name}: unknown category '{self.category}'; use one of "
                             f"{', '.join(CATEGORIES)}")
        if self.language not in LANGUAGES:
            raise InputError(f"task {self.name}: unknown language '{self.language}'; use one of "
                             f"{', '.join(LANGUAGES)}")
        if self.split not in SPLITS:
            raise InputError(f"task {self.name}: unknown split '{self.split}'; use one of {', '.join(SPLITS)}")
        sides = self.kind.prompts
        if self.prompts is None:
            self.prompts, self.prompts_optional = dict(sides), True
        unknown = set(self.prompts) - set(sides)
        if unknown:
            raise InputError(f"task {self.name}: no side named {', '.join(sorted(unknown))} in a {self.type} task "
                             f"(sides: {', '.join(sides)})")

    @property
    def kind(self) -> TaskType:
        return TYPES[self.type]

    def with_distractors(self, files: list[Path]) -> Task:
        """The same retrieval task with every passage of ``files`` added to its corpus (no qrels); the name says
        which files, so its results never mix with the plain task's."""
        if self.type != "Retrieval":
            raise InputError(f"task {self.name} is a {self.type} task; distractors only join retrieval corpora")
        from m3e.evaluation.types.retrieval import read_distractors

        texts = {f: read_distractors(f) for f in files}  # read now: a bad file fails before any model loads
        inner = self.load

        def load(root: Path):
            data = inner(root)
            for f, passages in texts.items():
                data.add_distractors(passages, f.name)
            return data

        names = "+".join(f.stem for f in files)
        return dataclasses.replace(self, name=f"{self.name}+{names}", load=load,
                                   description=f"{self.description} Corpus extended with the passages of "
                                               f"{', '.join(f.name for f in files)} as distractors.")
