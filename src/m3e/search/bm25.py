"""BM25 over jieba words (bm25s does the scoring) and reciprocal rank fusion with the dense ranking."""

from __future__ import annotations

import functools
import re

import numpy as np

_KEEP = re.compile(r"\w", re.UNICODE)  # drop tokens that are only punctuation or space


def words(text: str) -> list[str]:
    """jieba search-mode words of lower-cased text (long words also yield their parts: 新款手机 -> 新款, 手机,
    新款手机); English words stay whole, punctuation is dropped."""
    return [w for w in _jieba().lcut_for_search(text.lower()) if _KEEP.search(w)]


@functools.cache
def _jieba():
    """Imported once, quietly (it logs its dictionary loading at INFO)."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


class BM25:
    def __init__(self, chunk_ids: list[int], tokens: list[list[str]]):
        import bm25s

        self.chunk_ids = np.asarray(chunk_ids, dtype=np.int64)
        self.model = bm25s.BM25()
        # bm25s refuses an empty document list; an empty index simply finds nothing.
        if chunk_ids:
            self.model.index([t or [""] for t in tokens], show_progress=False)

    def top(self, query: str, n: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the best ``n`` chunks with a positive score."""
        if not len(self.chunk_ids):
            return []
        scores = self.model.get_scores(words(query))
        n = min(n, len(scores))
        best = np.argpartition(-scores, n - 1)[:n]
        best = best[np.lexsort((self.chunk_ids[best], -scores[best]))]
        return [(int(self.chunk_ids[i]), float(scores[i])) for i in best if scores[i] > 0]


def rrf(rankings: list[list[int]], k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the rankings an id appears in, best first."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, 1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
