"""How well a static model stands in for its teacher, measured on the held-out records only (never on an
evaluation task): settings and checkpoints are chosen on these numbers.

- ``pair_mrr10``: each held-out anchor of a pair or triplet source searches that source's held-out positives;
  MRR@10 of its own positive, averaged over sources (retrieval and paraphrase, the way the model is used).
- ``scored_spearman``: Spearman of cosine against the label of held-out scored pairs, averaged over sources.
- ``neighbour_recall10``: of each held-out text's 10 nearest held-out texts by the teacher, the share the model
  also puts in its 10 nearest (how much of the teacher's geometry survives).
- ``score``: the mean of the first two, the number to select on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import spearmanr

Encode = Callable[[list[str], str], np.ndarray]  # (texts, role) -> normalized vectors


def _mrr10(queries: np.ndarray, docs: np.ndarray, gold: np.ndarray) -> float:
    scores = queries @ docs.T
    gold_score = scores[np.arange(len(gold)), gold]
    rank = (scores > gold_score[:, None]).sum(axis=1)  # 0-based rank of the gold document
    return float(np.where(rank < 10, 1.0 / (rank + 1), 0.0).mean())


def evaluate(encode: Encode, held_out: dict[str, dict], teacher: tuple[list[str], np.ndarray] | None = None
             ) -> dict:
    per_source: dict[str, float] = {}
    pair_scores, scored = [], []
    for name, entry in sorted(held_out.items()):
        pairs = entry["pairs"]
        a_role, p_role = entry["roles"]
        if entry["kind"] == "scored":
            labelled = [(a, b, s) for a, b, s in pairs if s is not None]
            if len({s for _, _, s in labelled}) < 2:
                continue
            va = encode([a for a, _, _ in labelled], a_role)
            vb = encode([b for _, b, _ in labelled], p_role)
            rho = float(spearmanr(np.sum(va * vb, axis=1), [s for _, _, s in labelled]).statistic)
            per_source[name] = round(rho, 4)
            scored.append(rho)
            continue
        docs = sorted({p for _, p, _ in pairs})
        if len(docs) < 2:
            continue
        at = {d: i for i, d in enumerate(docs)}
        mrr = _mrr10(encode([a for a, _, _ in pairs], a_role), encode(docs, p_role),
                     np.array([at[p] for _, p, _ in pairs]))
        per_source[name] = round(mrr, 4)
        pair_scores.append(mrr)
    out = {"pair_mrr10": round(float(np.mean(pair_scores)), 4) if pair_scores else None,
           "scored_spearman": round(float(np.mean(scored)), 4) if scored else None}
    parts = [v for v in (out["pair_mrr10"], out["scored_spearman"]) if v is not None]
    out["score"] = round(float(np.mean(parts)), 4) if parts else None
    if teacher is not None:
        texts, ref = teacher
        out["neighbour_recall10"] = round(neighbour_recall(encode(texts, "query"), ref), 4)
    out["per_source"] = per_source
    return out


def neighbour_recall(vectors: np.ndarray, reference: np.ndarray, k: int = 10, block: int = 2048) -> float:
    """Mean overlap of the top-``k`` neighbours (self excluded) under ``vectors`` and under ``reference``."""
    n = len(vectors)
    if n <= k:
        return float("nan")
    hits = 0
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        tops = []
        for vec in (vectors, reference):
            s = vec[lo:hi] @ vec.T
            s[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
            tops.append(np.argpartition(-s, k, axis=1)[:, :k])
        hits += sum(len(set(a) & set(b)) for a, b in zip(tops[0].tolist(), tops[1].tolist(), strict=True))
    return hits / (n * k)
