"""Run tasks against one model: encode each distinct (prompt, text) once, score, write results.

Output layout (``OUTPUT/<model>/<task>.json`` and ``OUTPUT/summary.md``) lets several models' runs
share one folder; the summary is rebuilt from every result file present.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

from m3e.errors import InputError
from m3e.evaluation.metrics import pair_classification_scores, sts_scores
from m3e.evaluation.tasks import CATEGORIES, Task
from m3e.utils.atomic import atomic_path


class EmbeddingMemo:
    """Vectors of every (prompt, text) seen in this run, so tasks sharing texts encode them once."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self._store: dict[tuple[str, str], np.ndarray] = {}

    def prompt_for(self, prompt_name: str | None) -> str:
        if prompt_name and prompt_name in self.embedder.prompts:
            return self.embedder.prompts[prompt_name]
        return ""

    def encode(self, texts: list[str], prompt_name: str | None) -> np.ndarray:
        prompt = self.prompt_for(prompt_name)
        missing = list(dict.fromkeys(t for t in texts if (prompt, t) not in self._store))
        if missing:
            vecs = self.embedder.encode(missing, prompt=prompt, show_progress=len(missing) >= 2000)
            self._store.update({(prompt, t): v for t, v in zip(missing, vecs, strict=True)})
        return np.stack([self._store[(prompt, t)] for t in texts])


def model_slug(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "__", name.strip("/")) or "model"


def run_task(task: Task, memo: EmbeddingMemo, data_dir: Path) -> dict:
    start = time.perf_counter()
    data = task.load(data_dir)
    if len(data) == 0:
        raise InputError(f"task {task.name}: no rows left to evaluate")
    if task.type == "PairClassification" and len(set(data.labels)) < 2:
        raise InputError(f"task {task.name}: needs both labels 0 and 1, found only {set(data.labels)}")
    a = memo.encode(data.sentences1, task.prompts.get("sentence1"))
    b = memo.encode(data.sentences2, task.prompts.get("sentence2"))
    if task.type == "STS":
        scores = sts_scores(a, b, data.labels)
    elif task.type == "PairClassification":
        scores = pair_classification_scores(a, b, data.labels)
    else:  # pragma: no cover - guarded by TASK_TYPES
        raise InputError(f"task {task.name}: unsupported type {task.type}")
    return {
        "task": task.name,
        "type": task.type,
        "model": memo.embedder.name,
        "category": task.category,
        "main_score_name": task.main_score,
        "main_score": scores[task.main_score],
        "scores": scores,
        "n_samples": len(data),
        "dropped": data.dropped,
        "description": task.description,
        "seconds": round(time.perf_counter() - start, 3),
    }


def evaluate(embedder, tasks: list[Task], data_dir: Path, output: Path, progress=None) -> list[dict]:
    memo = EmbeddingMemo(embedder)
    out_dir = output / model_slug(embedder.name)
    results = []
    for task in tasks:
        result = run_task(task, memo, data_dir)
        results.append(result)
        with atomic_path(out_dir / f"{task.name}.json") as tmp:
            tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
        if progress:
            progress(result)
    write_summary(output)
    return results


def load_results(output: Path) -> dict[str, dict[str, dict]]:
    """model -> task -> result, from every ``OUTPUT/<model>/<task>.json``."""
    found: dict[str, dict[str, dict]] = {}
    for path in sorted(output.glob("*/*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            found.setdefault(result["model"], {})[result["task"]] = result
        except (ValueError, KeyError) as exc:
            raise InputError(f"{path}: not an m3e result file ({exc})") from None
    return found


def summary_markdown(results: dict[str, dict[str, dict]]) -> str:
    models = list(results)
    tasks: dict[str, dict] = {}
    for per_model in results.values():
        for name, r in per_model.items():
            tasks.setdefault(name, r)
    lines = ["| task | category | metric | " + " | ".join(models) + " |",
             "|---|---|---|" + "---|" * len(models)]
    for name, r in tasks.items():
        cells = [f"{results[m][name]['main_score'] * 100:.2f}" if name in results[m] else "-" for m in models]
        lines.append(f"| {name} | {r['category']} | {r['main_score_name']} | " + " | ".join(cells) + " |")
    for cat in CATEGORIES:
        names = [n for n, r in tasks.items() if r["category"] == cat]
        if not names:
            continue
        cells = []
        for m in models:
            have = [results[m][n]["main_score"] for n in names if n in results[m]]
            complete = len(have) == len(names)
            cells.append(f"{np.mean(have) * 100:.2f}" + ("" if complete else "*") if have else "-")
        lines.append(f"| **average {cat}** ({len(names)} tasks) | {cat} | | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Scores x 100. * = average over the tasks that model has results for.")
    return "\n".join(lines) + "\n"


def write_summary(output: Path) -> Path:
    target = output / "summary.md"
    with atomic_path(target) as tmp:
        tmp.write_text("# m3e evaluation summary\n\n" + summary_markdown(load_results(output)), encoding="utf-8")
    return target
