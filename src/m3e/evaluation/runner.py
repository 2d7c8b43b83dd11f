"""Run tasks against one model: encode each distinct (prompt, text) once, score, write results.

Output layout (``OUTPUT/<model>/<task>.json`` and ``OUTPUT/summary.md``) lets several models' runs
share one folder; the summary is rebuilt from every result file present.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m3e.errors import InputError
from m3e.evaluation.tasks import CATEGORIES, LANGUAGES, Task
from m3e.evaluation.types import TASK_TYPES, TaskRefused
from m3e.models.encoding import named_prompt, result_label
from m3e.utils.atomic import atomic_path


class EmbeddingMemo:
    """Vectors of every (prompt, text) seen in this run, so tasks sharing texts encode them once.

    With a :class:`~m3e.evaluation.cache.EmbeddingCache`, vectors also persist across runs.
    """

    def __init__(self, embedder, cache=None, show_progress: bool = False) -> None:
        self.embedder = embedder
        self.cache = cache
        self.show_progress = show_progress
        self._store: dict[tuple[str, str], np.ndarray] = {}
        self.encoded = 0  # texts actually run through the model in this run

    def encode(self, texts: list[str], prompt_name: str | None, optional: bool = False) -> np.ndarray:
        """Vectors of ``texts`` under the model's prompt ``prompt_name`` (see :func:`named_prompt`)."""
        prompt = named_prompt(self.embedder, prompt_name, optional=optional)
        missing = list(dict.fromkeys(t for t in texts if (prompt, t) not in self._store))
        if missing and self.cache is not None:
            found = self.cache.get(prompt, missing)
            self._store.update({(prompt, t): v for t, v in found.items()})
            missing = [t for t in missing if t not in found]
        if missing:
            progress = self.show_progress and len(missing) >= 256
            vecs = np.asarray(self.embedder.encode(missing, prompt=prompt, show_progress=progress), dtype=np.float32)
            self.encoded += len(missing)
            self._store.update({(prompt, t): v for t, v in zip(missing, vecs, strict=True)})
            if self.cache is not None:
                self.cache.put(prompt, missing, vecs)
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([self._store[(prompt, t)] for t in texts])


class PairMemo:
    """A reranker's score of every (query, document) pair seen in this run, so each pair is read once. ``embedder``
    names the reranker (for result labels)."""

    def __init__(self, reranker, show_progress: bool = False) -> None:
        self.embedder = reranker
        self.show_progress = show_progress
        self._store: dict[tuple[str, str], float] = {}
        self.scored = 0

    def score(self, groups: list[tuple[str, list[str]]], chunk: int = 512) -> list[np.ndarray]:
        """Scores of each (query, documents) group; the pairs not seen yet are read ``chunk`` queries at a time in
        shared batches."""
        todo = [(q, [d for d in dict.fromkeys(docs) if (q, d) not in self._store]) for q, docs in groups]
        todo = [(q, docs) for q, docs in todo if docs]
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            for (q, docs), values in zip(part, self.embedder.score_groups(part, truncate="window"), strict=True):
                self._store.update({(q, d): float(v) for d, v in zip(docs, values, strict=True)})
                self.scored += len(docs)
        return [np.array([self._store[(q, d)] for d in docs], dtype=np.float64) for q, docs in groups]


STAGE_TYPES = {"embedder": ("Retrieval",), "reranker": ("Retrieval", "Reranking")}


def model_slug(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "__", name.strip("/")) or "model"


@dataclass
class Rescore:
    """A second stage: ``memo``'s model (an embedder, or a reranker in a :class:`PairMemo`) re-scores the first
    model's top ``candidates`` on retrieval tasks; a reranker also ranks the candidates of reranking tasks."""

    memo: EmbeddingMemo | PairMemo
    candidates: int = 100

    @property
    def kind(self) -> str:
        return "reranker" if isinstance(self.memo, PairMemo) else "embedder"

    def label(self, first, task: Task) -> str:
        if task.type == "Reranking":  # the task brings its candidates: no first stage
            return result_label(self.memo.embedder)
        return f"{result_label(first)}>{result_label(self.memo.embedder)}@{self.candidates}"


def score_task(task: Task, data, memo: EmbeddingMemo, rescore: Rescore | None = None) -> tuple[dict[str, float], int]:
    """Encode what the task needs and score it by its type; returns (scores, number of evaluated samples)."""
    if len(data) == 0:
        raise InputError(f"task {task.name}: no rows left to evaluate")

    def encoder(m: EmbeddingMemo):
        return lambda texts, side: m.encode(texts, task.prompts.get(side), optional=task.prompts_optional)

    params = task.params
    if rescore is not None:
        allowed = STAGE_TYPES[rescore.kind]
        if task.type not in allowed:
            raise InputError(f"task {task.name}: a second stage {rescore.kind} applies to {' and '.join(allowed)} "
                             "tasks only")
        second = rescore.memo.score if rescore.kind == "reranker" else None
        params = {**params, "candidates": rescore.candidates,
                  **({"rerank": second} if second else {"rescore": encoder(rescore.memo)})}
    try:
        return task.kind.score(data, encoder(memo), params), len(data)
    except TaskRefused as exc:
        raise InputError(f"task {task.name}: {exc}") from None


def run_task(task: Task, memo: EmbeddingMemo, data_dir: Path, rescore: Rescore | None = None, data=None) -> dict:
    start = time.perf_counter()
    data = task.load(data_dir) if data is None else data
    scores, n = score_task(task, data, memo, rescore)
    result = {
        "task": task.name,
        "type": task.type,
        "model": rescore.label(memo.embedder, task) if rescore else result_label(memo.embedder),
        "backend": getattr(memo.embedder, "backend", "torch"),
        "category": task.category,
        "language": task.language,
        "split": task.split,
        "main_score_name": task.main_score,
        "main_score": scores[task.main_score],
        "scores": scores,
        "n_samples": n,
        "dropped": dict(data.dropped),
        "description": task.description,
        "seconds": round(time.perf_counter() - start, 3),
    }
    if getattr(data, "distractors", None):
        result["distractors"] = data.distractors
    return result


def evaluate(embedder, tasks: list[Task], data_dir: Path, output: Path, progress=None, cache=None,
             show_progress: bool = False, rescore=None, candidates: int = 100, rescore_cache=None) -> list[dict]:
    """Run ``tasks`` in order, writing each result as soon as it is scored, then the summary.

    ``rescore``: a second stage, an embedder or a reranker, that re-scores the first's top ``candidates`` on
    retrieval tasks (filed as FIRST>SECOND@N); a reranker also ranks the candidates of reranking tasks (filed
    under its name). With a second stage the first model's own results are written too, so the summary shows
    what the second stage adds."""
    memo = EmbeddingMemo(embedder, cache, show_progress)
    second = None
    if rescore is not None:
        is_reranker = getattr(rescore, "kind", "") == "reranker"
        stage = PairMemo(rescore, show_progress) if is_reranker else EmbeddingMemo(rescore, rescore_cache,
                                                                                   show_progress)
        second = Rescore(stage, candidates)
        allowed = STAGE_TYPES[second.kind]
        wrong = [t.name for t in tasks if t.type not in allowed]
        if wrong:
            raise InputError(f"a second stage {second.kind} applies to {' and '.join(allowed)} tasks only, not "
                             f"{', '.join(wrong)}")
    results = []
    for task in tasks:
        data = task.load(data_dir)
        runs = [None, second] if second is not None else [None]
        for stage in runs:
            result = run_task(task, memo, data_dir, stage, data)
            results.append(result)
            save_result(output, result)
            if progress:
                progress(result)
    write_summary(output)
    return results


def save_result(output: Path, result: dict) -> Path:
    target = output / model_slug(result["model"]) / f"{model_slug(result['task'])}.json"
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return target


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


TEXT2VEC_TASKS = ("ATEC", "BQ", "LCQMC", "PAWSX", "STSB", "SOHU-dd", "SOHU-dc")


def result_language(result: dict) -> str:
    """A result's language; files written before results carried one get their built-in task's."""
    if result.get("language"):
        return result["language"]
    from m3e.evaluation.builtin import task_language

    return task_language(result.get("task", ""))


def groups(tasks: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """Average rows over the test tasks: one per task type, one per category, one per language (Chinese,
    English, cross-lingual) and text2vec's 7-task Chinese STS average; validation tasks get a row of their own
    and join no other (they choose settings, they are never reported as test scores)."""
    test = {n: r for n, r in tasks.items() if r.get("split", "test") != "validation"}
    out = []
    views = (("type", lambda r: r.get("type"), TASK_TYPES), ("category", lambda r: r.get("category"), CATEGORIES),
             ("language", result_language, tuple(LANGUAGES)))
    for kind, key, values in views:
        for value in values:
            names = [n for n, r in test.items() if key(r) == value]
            if names:
                label = LANGUAGES[value] if kind == "language" else value
                out.append((f"{label} ({kind}, {len(names)})", names))
    if all(n in test for n in TEXT2VEC_TASKS):
        out.append(("text2vec Chinese STS (7)", list(TEXT2VEC_TASKS)))
    validation = [n for n in tasks if n not in test]
    if validation:
        out.append((f"validation ({len(validation)}, not a test score)", validation))
    return out


def average(results_for_model: dict[str, dict], names: list[str]) -> tuple[float | None, bool]:
    """Mean main score over ``names`` the model has; the flag says whether it has all of them."""
    have = [results_for_model[n]["main_score"] for n in names if n in results_for_model]
    return (float(np.mean(have)) if have else None), len(have) == len(names)


def summary_markdown(results: dict[str, dict[str, dict]]) -> str:
    models = list(results)
    tasks: dict[str, dict] = {}
    for per_model in results.values():
        for name, r in per_model.items():
            tasks.setdefault(name, r)
    order = {t: i for i, t in enumerate(TASK_TYPES)}
    tasks = dict(sorted(tasks.items(), key=lambda kv: (kv[1].get("split") == "validation",
                                                       order.get(kv[1].get("type"), 99))))
    lines = ["| task | type | category | language | metric | " + " | ".join(models) + " |",
             "|---|---|---|---|---|" + "---|" * len(models)]
    for name, r in tasks.items():
        cells = [f"{results[m][name]['main_score'] * 100:.2f}" if name in results[m] else "-" for m in models]
        split = " (validation)" if r.get("split") == "validation" else ""
        lines.append(f"| {name}{split} | {r.get('type', '')} | {r['category']} | {result_language(r)} | "
                     f"{r['main_score_name']} | " + " | ".join(cells) + " |")
    for label, names in groups(tasks):
        cells = []
        for m in models:
            mean, complete = average(results[m], names)
            cells.append("-" if mean is None else f"{mean * 100:.2f}" + ("" if complete else "*"))
        lines.append(f"| **average {label}** | | | | | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Scores x 100. * = average over the tasks that model has results for.")
    return "\n".join(lines) + "\n"


def write_summary(output: Path) -> Path:
    target = output / "summary.md"
    with atomic_path(target) as tmp:
        tmp.write_text("# m3e evaluation summary\n\n" + summary_markdown(load_results(output)), encoding="utf-8")
    return target
