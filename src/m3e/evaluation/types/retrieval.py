"""Retrieval: each query ranks the whole corpus by cosine; nDCG@10 and trec_eval's other measures (MTEB).

Built for corpora of tens of thousands of passages and more: the exact top-k comes from blocked matrix
products (queries x a slice of the corpus at a time, never the full matrix), and the measures are computed on
arrays of gains, one row per query. Graded qrels give their grade as the gain, as trec_eval's nDCG does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m3e.data.skips import SkipReport
from m3e.errors import InputError
from m3e.evaluation.types.base import Encode, TaskRefused, TaskType, text_field, unit

K_VALUES = (1, 3, 5, 10, 20, 100, 1000)
Q_BLOCK, D_BLOCK = 512, 16_384  # peak of one block product: 512 x 16,384 float32 scores = 32 MB


@dataclass
class RetrievalData:
    """Queries against one corpus; ``qrels[i]`` maps relevant document ids of query i to a grade (> 0)."""

    queries: list[str]
    corpus: list[str]
    doc_ids: list[str]
    qrels: list[dict[str, int]]
    dropped: SkipReport = field(default_factory=SkipReport)
    distractors: dict[str, int] = field(default_factory=dict)  # source -> passages it added

    def __len__(self) -> int:
        return len(self.queries)

    def add_distractors(self, texts: list[str], source: str) -> int:
        """Append passages without qrels. A text already in the corpus (an exact copy of a relevant passage,
        say) is not added twice: it would be an unlabelled relevant document. Skips are counted."""
        known = {t.strip() for t in self.corpus}
        added = 0
        for text in texts:
            key = text.strip()
            if not key:
                self.dropped.add("empty distractor")
                continue
            if key in known:
                self.dropped.add("distractor already in the corpus")
                continue
            known.add(key)
            self.corpus.append(text)
            self.doc_ids.append(f"distractor-{len(self.corpus):08d}")
            added += 1
        self.distractors[source] = self.distractors.get(source, 0) + added
        return added


def _desc_rank(ids: list[str]) -> np.ndarray:
    """Rank of each id in ascending string order (bigger = later), for trec_eval's id-descending tie-break."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    return rank


def rank_order(scores: np.ndarray, id_rank: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` best scores, ties broken by document id descending (trec_eval's order)."""
    return np.lexsort((-id_rank, -scores))[:top]


def top_k(queries: np.ndarray, docs: np.ndarray, k: int, id_rank: np.ndarray, q_block: int = Q_BLOCK,
          d_block: int = D_BLOCK) -> np.ndarray:
    """Exact top-k document indices per query by dot product, best first, ties by id rank descending.

    Memory: one ``q_block x d_block`` score block plus ``q_block x 2k`` running candidates, whatever the corpus
    size. Ties at a block's k-th score are resolved by id rank, so the result equals a full sort.
    """
    n_docs = len(docs)
    k = min(k, n_docs)
    out = np.empty((len(queries), k), dtype=np.int64)
    for qs in range(0, len(queries), q_block):
        qb = queries[qs:qs + q_block]
        best_i = best_s = None
        for ds in range(0, n_docs, d_block):
            sims = qb @ docs[ds:ds + d_block].T
            keep = _block_top(sims, min(k, sims.shape[1]), id_rank[ds:ds + d_block])
            cand_i = keep + ds
            cand_s = np.take_along_axis(sims, keep, axis=1)
            if best_i is not None:
                cand_i = np.concatenate([best_i, cand_i], axis=1)
                cand_s = np.concatenate([best_s, cand_s], axis=1)
            order = np.lexsort((-id_rank[cand_i], -cand_s), axis=1)[:, :k]
            best_i = np.take_along_axis(cand_i, order, axis=1)
            best_s = np.take_along_axis(cand_s, order, axis=1)
        out[qs:qs + len(qb)] = best_i
    return out


def _block_top(sims: np.ndarray, k: int, id_rank: np.ndarray) -> np.ndarray:
    """Column indices of each row's k best (score, id rank) pairs, unordered."""
    if k >= sims.shape[1]:
        return np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
    keep = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(sims, keep, axis=1).min(axis=1)
    crowded = np.flatnonzero((sims >= kth[:, None]).sum(axis=1) > k)  # more ties at the k-th score than room
    for r in crowded:
        above = np.flatnonzero(sims[r] > kth[r])
        tied = np.flatnonzero(sims[r] == kth[r])
        tied = tied[np.argsort(-id_rank[tied], kind="stable")][:k - len(above)]
        keep[r] = np.concatenate([above, tied])
    return keep


def scores_from_gains(gains: np.ndarray, ideal: np.ndarray, k_values=K_VALUES) -> dict[str, float]:
    """trec_eval's nDCG@k, MAP@k, recall@k, P@k, hit rate@k and MTEB's MRR@k, averaged over queries.

    ``gains[q, r]``: the grade of query q's document at rank r (0 = not relevant; rows padded with 0 past the
    end of a ranking); ``ideal[q]``: query q's relevant grades, sorted descending, padded with 0.
    """
    n_q, width = gains.shape
    if n_q == 0:
        return {}
    hit = gains > 0
    n_rel = (ideal > 0).sum(axis=1)
    safe_rel = np.maximum(n_rel, 1)
    ranks = np.arange(1, width + 1)
    dcg = np.cumsum(gains / np.log2(ranks + 1), axis=1)
    idcg = np.cumsum(ideal / np.log2(np.arange(2, ideal.shape[1] + 2)), axis=1) if ideal.shape[1] else None
    hits = np.cumsum(hit, axis=1)
    prec_at_hit = np.cumsum(np.where(hit, hits / ranks, 0.0), axis=1)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), np.iinfo(np.int64).max - 1)  # no hit: past every k
    out: dict[str, float] = {}
    for k in k_values:
        at = min(k, width) - 1
        got = hits[:, at]
        ideal_k = idcg[:, min(k, idcg.shape[1]) - 1] if idcg is not None else np.zeros(n_q)
        with np.errstate(divide="ignore", invalid="ignore"):
            ndcg = np.where(ideal_k > 0, dcg[:, at] / ideal_k, 0.0)
        values = {
            f"ndcg_at_{k}": ndcg,
            f"map_at_{k}": np.where(n_rel > 0, prec_at_hit[:, at] / safe_rel, 0.0),
            f"recall_at_{k}": np.where(n_rel > 0, got / safe_rel, 0.0),
            f"precision_at_{k}": got / k,
            f"hit_rate_at_{k}": (got > 0).astype(np.float64),
            f"mrr_at_{k}": np.where(first < k, 1.0 / (first + 1), 0.0),
        }
        out.update({name: float(np.mean(v)) for name, v in values.items()})
    return out


def ideal_gains(qrels: list[dict], width: int | None = None) -> np.ndarray:
    grades = [sorted((g for g in rel.values() if g > 0), reverse=True) for rel in qrels]
    width = max((len(g) for g in grades), default=0) if width is None else width
    out = np.zeros((len(qrels), width))
    for i, g in enumerate(grades):
        out[i, :len(g)] = g[:width]
    return out


def ranking_scores(ranked: list[list[str]], qrels: list[dict[str, int]], k_values=K_VALUES) -> dict[str, float]:
    """:func:`scores_from_gains` for rankings given as document-id lists (any lengths)."""
    width = max((len(r) for r in ranked), default=0) or 1
    gains = np.zeros((len(ranked), width))
    for i, (ids, rels) in enumerate(zip(ranked, qrels, strict=True)):
        gains[i, :len(ids)] = [max(rels.get(d, 0), 0) for d in ids]
    return scores_from_gains(gains, ideal_gains(qrels), k_values)


def retrieval_scores(query_emb: np.ndarray, doc_emb: np.ndarray, doc_ids: list[str], qrels: list[dict[str, int]],
                     k_values=K_VALUES) -> dict[str, float]:
    """Exact cosine top-max(k) over the whole corpus for each query, then :func:`scores_from_gains`."""
    position = {d: j for j, d in enumerate(doc_ids)}
    if len(position) != len(doc_ids):
        raise TaskRefused("document ids are not unique")
    top = top_k(unit(query_emb), unit(doc_emb), max(k_values), _desc_rank(doc_ids))
    return scores_from_gains(_gains(top, position, qrels), ideal_gains(qrels), k_values)


def two_stage_scores(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray],
                     doc_ids: list[str], qrels: list[dict[str, int]], candidates: int = 100,
                     k_values=K_VALUES) -> dict[str, float]:
    """The first model's exact top ``candidates`` per query, re-ordered by the second model's cosine (ties by
    document id descending, as trec_eval); documents past the candidates are not retrieved."""
    position = {d: j for j, d in enumerate(doc_ids)}
    if len(position) != len(doc_ids):
        raise TaskRefused("document ids are not unique")
    id_rank = _desc_rank(doc_ids)
    top = top_k(unit(first[0]), unit(first[1]), candidates, id_rank)
    q2, d2 = unit(second[0]), unit(second[1])
    rescored = np.round(np.einsum("qd,qkd->qk", q2, d2[top]), 6)  # equal cosines tie, whatever the rounding
    order = np.lexsort((-id_rank[top], -rescored), axis=1)
    return scores_from_gains(_gains(np.take_along_axis(top, order, axis=1), position, qrels), ideal_gains(qrels),
                             k_values)


def rerank_stage_scores(first: tuple[np.ndarray, np.ndarray], queries: list[str], corpus: list[str], pair_score,
                        doc_ids: list[str], qrels: list[dict[str, int]], candidates: int = 100,
                        k_values=K_VALUES) -> dict[str, float]:
    """The first model's exact top ``candidates`` per query, re-ordered by a reranker's scores
    (``pair_score([(query, documents), ...])`` -> one array per query; ties by document id descending); documents
    past the candidates are not retrieved."""
    position = {d: j for j, d in enumerate(doc_ids)}
    if len(position) != len(doc_ids):
        raise TaskRefused("document ids are not unique")
    id_rank = _desc_rank(doc_ids)
    top = top_k(unit(first[0]), unit(first[1]), candidates, id_rank)
    scores = pair_score([(q, [corpus[j] for j in row]) for q, row in zip(queries, top, strict=True)])
    rescored = np.round(np.stack([np.asarray(s, dtype=np.float64) for s in scores]), 6)
    order = np.lexsort((-id_rank[top], -rescored), axis=1)
    return scores_from_gains(_gains(np.take_along_axis(top, order, axis=1), position, qrels), ideal_gains(qrels),
                             k_values)


def _gains(top: np.ndarray, position: dict[str, int], qrels: list[dict[str, int]]) -> np.ndarray:
    """grade of each ranked document (0: not relevant), by vectorized lookup of (query, document) keys"""
    n_docs = len(position)
    pairs = [(q, position[d], g) for q, rel in enumerate(qrels) for d, g in rel.items() if g > 0 and d in position]
    gains = np.zeros(top.shape)
    if pairs:
        q_idx, d_idx, grade = (np.array(col) for col in zip(*pairs, strict=True))
        keys = q_idx.astype(np.int64) * n_docs + d_idx
        order = np.argsort(keys)
        keys, grade = keys[order], grade[order]
        wanted = np.arange(len(top))[:, None] * n_docs + top
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        gains = np.where(keys[at] == wanted, grade[at], 0).astype(np.float64)
    return gains


def score(data: RetrievalData, encode: Encode, params: dict) -> dict[str, float]:
    """``params["rescore"]``: a second model's encode, or ``params["rerank"]``: a reranker's pair scores; either
    re-scores the first's top ``params["candidates"]``."""
    if not data.corpus:
        raise TaskRefused("the corpus is empty")
    q = encode(data.queries, "query")
    d = encode(data.corpus, "document")
    if params.get("rerank") is not None:
        return rerank_stage_scores((q, d), data.queries, data.corpus, params["rerank"], data.doc_ids, data.qrels,
                                   int(params.get("candidates", 100)))
    second = params.get("rescore")
    if second is None:
        return retrieval_scores(q, d, data.doc_ids, data.qrels)
    return two_stage_scores((q, d), (second(data.queries, "query"), second(data.corpus, "document")), data.doc_ids,
                            data.qrels, int(params.get("candidates", 100)))


# --- task files ------------------------------------------------------------------------------------------------

def text_list(path: Path, no: int, row: dict, key: str, required: bool) -> list[str]:
    """A string or a list of strings (a JSON list inside a CSV cell too)."""
    value = row.get(key)
    if value in (None, "", []):
        if required:
            raise InputError(f"{path}:{no}: missing field '{key}'")
        return []
    if isinstance(value, str):
        if value.startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = [value]
        else:
            value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(f"{path}:{no}: field '{key}' must be a non-empty string or a list of them")
    return value


def read_distractors(path: Path) -> list[str]:
    """Passages from a txt (one a line), jsonl, csv or tsv (a ``text`` column) file; blank entries skipped."""
    from m3e.data.texts import read_texts

    return read_texts(path, column="text", skip_blank=True).texts


def from_records(path: Path, records) -> RetrievalData:
    """``query, pos[, neg]`` rows (same query merged), ``doc`` rows (extra passages) and ``distractors`` rows
    naming passage files relative to the task file."""
    data = RetrievalData([], [], [], [])
    doc_id: dict[str, str] = {}
    by_query: dict[str, dict[str, int]] = {}
    extra: list[tuple[int, str]] = []

    def add(text: str) -> str:
        if text not in doc_id:
            doc_id[text] = f"d{len(doc_id)}"
            data.corpus.append(text)
            data.doc_ids.append(doc_id[text])
        return doc_id[text]

    for no, row in records:
        if "distractors" in row and not row.get("query"):
            extra += [(no, p) for p in text_list(path, no, row, "distractors", required=True)]
            continue
        if not row.get("query") and row.get("doc"):
            add(text_field(path, no, row, "doc"))
            continue
        rel = by_query.setdefault(text_field(path, no, row, "query"), {})
        for pos in text_list(path, no, row, "pos", required=True):
            rel[add(pos)] = 1
        for neg in text_list(path, no, row, "neg", required=False):
            add(neg)
    data.queries, data.qrels = list(by_query), list(by_query.values())
    for no, name in extra:
        file = path.parent / name
        if not file.is_file():
            raise InputError(f"{path}:{no}: distractor file {file} does not exist")
        data.add_distractors(read_distractors(file), file.name)
    return data


TYPE = TaskType(
    name="Retrieval", main_score="ndcg_at_10", prompts={"query": "query", "document": "passage"}, category="s2p",
    score=score, fields="query, pos[, neg]; rows with only doc; rows with distractors: FILE",
    detect=lambda keys, records: {"query", "pos"} <= keys,
    from_records=from_records,
)
