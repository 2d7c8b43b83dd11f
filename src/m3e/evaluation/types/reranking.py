"""Reranking: each query ranks only its own candidates (MTEB's reranking = retrieval over ``top_ranked``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m3e.data.skips import SkipReport
from m3e.evaluation.types.base import Encode, TaskType, text_field, unit
from m3e.evaluation.types.retrieval import K_VALUES, _desc_rank, rank_order, ranking_scores, text_list


@dataclass
class RerankingData:
    """Each query with its own candidate list; ``relevance[i][j]`` grades candidate j of query i (0 = not)."""

    queries: list[str]
    candidates: list[list[str]]
    relevance: list[list[int]]
    dropped: SkipReport = field(default_factory=SkipReport)

    def __len__(self) -> int:
        return len(self.queries)


def reranking_scores(query_emb: np.ndarray, candidates: list[tuple[np.ndarray, list[str]]],
                     qrels: list[dict[str, int]], k_values=K_VALUES) -> dict[str, float]:
    q = unit(query_emb)
    ranked = []
    for qi, (emb, ids) in enumerate(candidates):
        sims = unit(emb) @ q[qi]
        ranked.append([ids[j] for j in rank_order(sims, _desc_rank(ids), len(ids))])
    return ranking_scores(ranked, qrels, k_values)


def _qrels(data: RerankingData) -> list[dict[str, int]]:
    return [{str(j): r for j, r in enumerate(rel) if r > 0} for rel in data.relevance]


def score(data: RerankingData, encode: Encode, params: dict) -> dict[str, float]:
    """A bi-encoder ranks each query's candidates by cosine; ``params["rerank"]`` (a reranker's scores of
    ``[(query, documents), ...]``) ranks them by its scores instead."""
    pair_score = params.get("rerank")
    if pair_score is not None:
        return pair_scores(data, pair_score)
    q = encode(data.queries, "query")
    cands = [(encode(texts, "document"), [str(j) for j in range(len(texts))]) for texts in data.candidates]
    return reranking_scores(q, cands, _qrels(data))


def pair_scores(data: RerankingData, pair_score, k_values=K_VALUES) -> dict[str, float]:
    """Each query's candidates ordered by a reranker's scores (``pair_score([(query, candidates), ...])`` -> one
    array per query; ties: candidate id descending, as the cosine path and trec_eval), then measured as MTEB
    measures reranking."""
    ranked = []
    scores = pair_score(list(zip(data.queries, data.candidates, strict=True)))
    for texts, values in zip(data.candidates, scores, strict=True):
        ids = [str(j) for j in range(len(texts))]
        sims = np.round(np.asarray(values, dtype=np.float64), 6)
        ranked.append([ids[j] for j in rank_order(sims, _desc_rank(ids), len(ids))])
    return ranking_scores(ranked, _qrels(data), k_values)


def from_records(path: Path, records) -> RerankingData:
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for no, row in records:
        pos, neg = groups.setdefault(text_field(path, no, row, "query"), ([], []))
        pos += text_list(path, no, row, "pos", required=True)
        neg += text_list(path, no, row, "neg", required=True)
    data = RerankingData([], [], [])
    for query, (pos, neg) in groups.items():
        cands = list(dict.fromkeys(pos + neg))
        data.dropped.add("duplicate candidate", n=len(pos) + len(neg) - len(cands))
        positives = set(pos)
        data.queries.append(query)
        data.candidates.append(cands)
        data.relevance.append([1 if c in positives else 0 for c in cands])
    return data


TYPE = TaskType(
    name="Reranking", main_score="map_at_1000", prompts={"query": "query", "document": "passage"}, category="s2p",
    score=score, fields="query, pos, neg (negatives on every query)",
    # every query has its own negatives to rank
    detect=lambda keys, records: {"query", "pos", "neg"} <= keys and all(
        row.get("neg") for _, row in records if row.get("query")),
    from_records=from_records,
)
