"""Task definitions and the built-in Chinese tasks on the local data files.

Each built-in task reads the original files from a data folder (``--data-dir`` / ``$M3E_DATA_DIR``),
never a copy in the repository. Where a task exists in C-MTEB it keeps C-MTEB's name and protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from m3e.errors import InputError

TASK_TYPES = ("STS", "PairClassification")
CATEGORIES = ("s2s", "s2p", "bitext", "s2c")


@dataclass
class PairData:
    """Two aligned text columns and a label per pair (graded score or 0/1)."""

    sentences1: list[str]
    sentences2: list[str]
    labels: list[float]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count, reported in results

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Task:
    name: str
    type: str  # one of TASK_TYPES
    category: str  # one of CATEGORIES
    description: str
    main_score: str
    load: Callable[[Path], PairData]
    # Prompt names per side; the model's own prompt of that name is used when it has one.
    prompts: dict[str, str] = field(default_factory=lambda: {"sentence1": "query", "sentence2": "query"})


def _need(path: Path) -> Path:
    if not path.is_file():
        raise InputError(
            f"missing data file {path} (dataset folder {path.parent}); point --data-dir or $M3E_DATA_DIR at "
            "the folder that holds the dataset folders"
        )
    return path


def _lines(path: Path) -> list[tuple[int, str]]:
    text = _need(path).read_text(encoding="utf-8-sig")
    return [(no, line) for no, line in enumerate(text.splitlines(), 1) if line.strip()]


def _collect(path: Path, rows, label_map: dict[str, float] | None) -> PairData:
    """Turn ``(line, sentence1, sentence2, raw label)`` rows into PairData; unmapped labels are counted."""
    data = PairData([], [], [])
    for no, a, b, raw in rows:
        if label_map is not None:
            if raw not in label_map:
                data.dropped[f"label {raw}"] = data.dropped.get(f"label {raw}", 0) + 1
                continue
            value = label_map[raw]
        else:
            try:
                value = float(raw)
            except ValueError:
                raise InputError(f"{path}:{no}: label '{raw}' is not a number") from None
        for key, text in (("sentence1", a), ("sentence2", b)):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"{path}:{no}: {key} is empty or not a string")
        data.sentences1.append(a)
        data.sentences2.append(b)
        data.labels.append(value)
    return data


def load_tsv_pairs(path: Path, label_map: dict[str, float] | None = None) -> PairData:
    """``sentence1<TAB>sentence2<TAB>label`` rows; ``label_map`` maps string labels (others are dropped)."""

    def rows():
        for no, line in _lines(path):
            parts = line.split("\t")
            if len(parts) != 3:
                raise InputError(f"{path}:{no}: expected 3 tab-separated fields, found {len(parts)}")
            yield no, *parts

    return _collect(path, rows(), label_map)


def load_jsonl_pairs(path: Path, label_map: dict[str, float] | None = None) -> PairData:
    """JSON lines with sentence1, sentence2, label (int or string)."""

    def rows():
        for no, line in _lines(path):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{no}: invalid JSON ({exc.msg})") from None
            for key in ("sentence1", "sentence2", "label"):
                if key not in row:
                    raise InputError(f"{path}:{no}: missing field '{key}'")
            yield no, row["sentence1"], row["sentence2"], str(row["label"])

    return _collect(path, rows(), label_map)


def _sts(name: str, rel: str, description: str, loader=load_tsv_pairs) -> Task:
    return Task(name=name, type="STS", category="s2s", description=description, main_score="cosine_spearman",
                load=lambda root: loader(root / rel))


NLI = {"entailment": 1.0, "contradiction": 0.0}

BUILTIN_TASKS: dict[str, Task] = {t.name: t for t in [
    _sts("ATEC", "ATEC/ATEC.test.data", "Ant Financial question matching, binary labels scored by Spearman as "
         "in C-MTEB; senteval_cn test split (20,000 pairs; C-MTEB uses the same 20,000-pair test)."),
    _sts("BQ", "BQ/BQ.test.data", "Bank question matching, binary, Spearman (C-MTEB protocol), 10,000 test pairs."),
    _sts("LCQMC", "LCQMC/LCQMC.test.data", "Large-scale Chinese question matching, binary, Spearman, 12,500 test "
         "pairs."),
    _sts("PAWSX", "PAWSX/PAWSX.test.data", "PAWS-X zh paraphrase adversaries (word order), binary, Spearman, 2,000 "
         "test pairs."),
    _sts("STSB", "STS-B/STS-B.test.data", "STS-B translated to Chinese, scores 0-5 (rounded), Spearman, 1,361 test "
         "pairs (C-MTEB's STSB has 1,360)."),
    _sts("AFQMC", "AFQMC/dev.json", "Alipay question matching, CLUE dev split as in C-MTEB (4,316 pairs), labels are "
         "strings '0'/'1'; overlaps ATEC.", loader=lambda p: load_jsonl_pairs(p, {"0": 0.0, "1": 1.0})),
    _sts("SOHU-dd", "SOHU/dd-test.jsonl", "Sohu short document vs document, labels 0/3/5, Spearman (text2vec "
         "protocol), 500 pairs; not in C-MTEB.", loader=load_jsonl_pairs),
    _sts("SOHU-dc", "SOHU/dc-test.jsonl", "Sohu short document vs long document (~1,000 chars, truncated at the "
         "model's max length), labels 0/3/5, Spearman, 500 pairs; not in C-MTEB.", loader=load_jsonl_pairs),
    Task("Ocnli", "PairClassification", "s2s", "Original Chinese NLI dev split (C-MTEB protocol): entailment=1, "
         "contradiction=0, neutral and '-' dropped; main score max accuracy over similarity functions.",
         "max_accuracy", lambda root: load_jsonl_pairs(root / "OCNLI" / "dev.json", NLI)),
    Task("Cmnli", "PairClassification", "s2s", "Chinese MNLI dev split (C-MTEB protocol, 12,241 rows before "
         "dropping neutral); main score max accuracy over similarity functions.",
         "max_accuracy", lambda root: load_tsv_pairs(root / "CMNLI" / "dev.txt", NLI)),
]}


def select_tasks(names: list[str] | None = None, category: str | None = None) -> list[Task]:
    """Tasks by name (case-insensitive) or category; everything when neither is given."""
    if names:
        lookup = {n.lower(): t for n, t in BUILTIN_TASKS.items()}
        unknown = [n for n in names if n.lower() not in lookup]
        if unknown:
            raise InputError(f"unknown task(s) {', '.join(unknown)}; known tasks: {', '.join(BUILTIN_TASKS)}")
        return [lookup[n.lower()] for n in names]
    if category:
        if category not in CATEGORIES:
            raise InputError(f"unknown category '{category}'; use one of {', '.join(CATEGORIES)}")
        chosen = [t for t in BUILTIN_TASKS.values() if t.category == category]
        if not chosen:
            raise InputError(f"no built-in task in category '{category}' yet")
        return chosen
    return list(BUILTIN_TASKS.values())
