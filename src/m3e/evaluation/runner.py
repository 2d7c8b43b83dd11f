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
from m3e.evaluation import metrics
from m3e.evaluation.tasks import CATEGORIES, TASK_TYPES, Task
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

    def prompt_for(self, prompt_name: str | None) -> str:
        if prompt_name and prompt_name in self.embedder.prompts:
            return self.embedder.prompts[prompt_name]
        return ""

    def encode(self, texts: list[str], prompt_name: str | None) -> np.ndarray:
        prompt = self.prompt_for(prompt_name)
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


def model_slug(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "__", name.strip("/")) or "model"


def _refuse(task: Task, why: str) -> None:
    raise InputError(f"task {task.name}: {why}")


def score_task(task: Task, data, memo: EmbeddingMemo) -> tuple[dict[str, float], int]:
    """Encode what the task needs and score it; returns (scores, number of evaluated samples)."""
    p = task.prompts
    params = task.params
    if len(data) == 0:
        _refuse(task, "no rows left to evaluate")
    if task.type in ("STS", "PairClassification"):
        a = memo.encode(data.sentences1, p.get("sentence1"))
        b = memo.encode(data.sentences2, p.get("sentence2"))
        if task.type == "STS":
            return metrics.sts_scores(a, b, data.labels), len(data)
        if len(set(data.labels)) < 2:
            _refuse(task, f"needs both labels 0 and 1, found only {sorted(set(data.labels))}")
        return metrics.pair_classification_scores(a, b, data.labels), len(data)
    if task.type == "Classification":
        if not data.train_texts:
            _refuse(task, "the training split is empty")
        if len(set(data.train_labels)) < 2:
            _refuse(task, f"needs at least two classes in the training split, found {sorted(set(data.train_labels))}")
        unseen = sorted(set(data.labels) - set(data.train_labels))
        if unseen:
            _refuse(task, f"test labels missing from the training split: {', '.join(unseen[:10])}")
        chosen = metrics.undersample_indices(data.train_labels, params.get("samples_per_label", 32),
                                             params.get("n_experiments", 10), params.get("seed", 42))
        union = sorted(set().union(*chosen))  # only rows some experiment trains on are encoded, as in MTEB
        pos = {j: i for i, j in enumerate(union)}
        union_emb = memo.encode([data.train_texts[j] for j in union], p.get("text"))
        train_emb = np.zeros((len(data.train_texts), union_emb.shape[1]), dtype=np.float32)
        train_emb[union] = union_emb[[pos[j] for j in union]]
        test_emb = memo.encode(data.texts, p.get("text"))
        scores = metrics.classification_scores(
            train_emb, data.train_labels, test_emb, data.labels,
            samples_per_label=params.get("samples_per_label", 32), n_experiments=params.get("n_experiments", 10),
            seed=params.get("seed", 42))
        return scores, len(data)
    if task.type == "Clustering":
        if len(set(data.labels)) < 2:
            _refuse(task, f"needs at least two clusters, found {sorted(set(data.labels))}")
        emb = memo.encode(data.texts, p.get("text"))
        kw = {k: params[k] for k in ("max_documents", "sample_size", "n_samples", "seed") if k in params}
        return metrics.clustering_scores(emb, data.labels, **kw), len(data)
    if task.type == "Retrieval":
        if not data.corpus:
            _refuse(task, "the corpus is empty")
        q = memo.encode(data.queries, p.get("query"))
        d = memo.encode(data.corpus, p.get("document"))
        return metrics.retrieval_scores(q, d, data.doc_ids, data.qrels), len(data)
    if task.type == "Reranking":
        q = memo.encode(data.queries, p.get("query"))
        cands = []
        for texts in data.candidates:
            cands.append((memo.encode(texts, p.get("document")), [str(j) for j in range(len(texts))]))
        qrels = [{str(j): r for j, r in enumerate(rel) if r > 0} for rel in data.relevance]
        return metrics.reranking_scores(q, cands, qrels), len(data)
    if task.type == "BitextMining":
        a = memo.encode(data.sentences1, p.get("sentence1"))
        b = memo.encode(data.sentences2, p.get("sentence2"))
        return metrics.bitext_scores(a, b), len(data)
    _refuse(task, f"unsupported type {task.type}")  # pragma: no cover - Task validates its type
    raise AssertionError


def run_task(task: Task, memo: EmbeddingMemo, data_dir: Path) -> dict:
    start = time.perf_counter()
    data = task.load(data_dir)
    scores, n = score_task(task, data, memo)
    from m3e.models.encoder import result_label

    return {
        "task": task.name,
        "type": task.type,
        "model": result_label(memo.embedder),
        "backend": getattr(memo.embedder, "backend", "torch"),
        "category": task.category,
        "main_score_name": task.main_score,
        "main_score": scores[task.main_score],
        "scores": scores,
        "n_samples": n,
        "dropped": data.dropped,
        "description": task.description,
        "seconds": round(time.perf_counter() - start, 3),
    }


def evaluate(embedder, tasks: list[Task], data_dir: Path, output: Path, progress=None, cache=None,
             show_progress: bool = False) -> list[dict]:
    """Run ``tasks`` in order, writing each result as soon as it is scored, then the summary."""
    memo = EmbeddingMemo(embedder, cache, show_progress)
    results = []
    for task in tasks:
        result = run_task(task, memo, data_dir)
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


def groups(tasks: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """Average rows: one per task type, one per category, and text2vec's 7-task Chinese STS average."""
    out = []
    for kind, key, values in (("type", "type", TASK_TYPES), ("category", "category", CATEGORIES)):
        for value in values:
            names = [n for n, r in tasks.items() if r.get(key) == value]
            if names:
                out.append((f"{value} ({kind}, {len(names)})", names))
    if all(n in tasks for n in TEXT2VEC_TASKS):
        out.append(("text2vec Chinese STS (7)", list(TEXT2VEC_TASKS)))
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
    tasks = dict(sorted(tasks.items(), key=lambda kv: order.get(kv[1].get("type"), 99)))
    lines = ["| task | type | category | metric | " + " | ".join(models) + " |",
             "|---|---|---|---|" + "---|" * len(models)]
    for name, r in tasks.items():
        cells = [f"{results[m][name]['main_score'] * 100:.2f}" if name in results[m] else "-" for m in models]
        lines.append(f"| {name} | {r.get('type', '')} | {r['category']} | {r['main_score_name']} | "
                     + " | ".join(cells) + " |")
    for label, names in groups(tasks):
        cells = []
        for m in models:
            mean, complete = average(results[m], names)
            cells.append("-" if mean is None else f"{mean * 100:.2f}" + ("" if complete else "*"))
        lines.append(f"| **average {label}** | | | | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Scores x 100. * = average over the tasks that model has results for.")
    return "\n".join(lines) + "\n"


def write_summary(output: Path) -> Path:
    target = output / "summary.md"
    with atomic_path(target) as tmp:
        tmp.write_text("# m3e evaluation summary\n\n" + summary_markdown(load_results(output)), encoding="utf-8")
    return target
