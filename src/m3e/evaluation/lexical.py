"""The lexical baseline of the retrieval tasks: the project's own BM25 over jieba words (what ``m3e search
--hybrid`` fuses), ranked and measured exactly as the dense runs are, so a model's retrieval numbers have a
no-model reference beside them (``m3e eval --bm25 --type Retrieval``)."""

from __future__ import annotations

import time

import numpy as np

from m3e.errors import InputError
from m3e.evaluation.types.retrieval import K_VALUES, ranking_scores

LABEL = "bm25-jieba"


def bm25_rankings(queries: list[str], corpus: list[str], doc_ids: list[str], top: int = max(K_VALUES)
                  ) -> list[list[str]]:
    """Each query's best ``top`` documents by BM25 (ties by document id descending, as trec_eval)."""
    from m3e.search.bm25 import BM25, words

    index = BM25(list(range(len(corpus))), [words(t) for t in corpus])
    rank = np.empty(len(doc_ids), dtype=np.int64)
    rank[sorted(range(len(doc_ids)), key=lambda i: doc_ids[i])] = np.arange(len(doc_ids))
    out = []
    for query in queries:
        scores = index.model.get_scores(words(query))
        n = min(top, len(scores))
        best = np.argpartition(-scores, n - 1)[:n]
        best = best[np.lexsort((-rank[best], -scores[best]))]
        out.append([doc_ids[i] for i in best if scores[i] > 0])
    return out


def run_bm25(task, data_dir) -> dict:
    if task.type != "Retrieval":
        raise InputError(f"task {task.name}: the BM25 baseline applies to retrieval tasks only")
    start = time.perf_counter()
    data = task.load(data_dir)
    scores = ranking_scores(bm25_rankings(data.queries, data.corpus, data.doc_ids), data.qrels)
    return {"task": task.name, "type": task.type, "model": LABEL, "backend": "bm25", "category": task.category,
            "language": task.language, "split": task.split,
            "main_score_name": task.main_score, "main_score": scores[task.main_score], "scores": scores,
            "n_samples": len(data), "dropped": dict(data.dropped), "description": task.description,
            "seconds": round(time.perf_counter() - start, 3)}
