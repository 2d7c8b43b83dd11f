"""Hard-negative mining: for each (query, positive), take corpus passages ranked in a window (e.g. 10-100) by
the model, skipping any whose similarity comes too close to the positive's (likely unlabelled positives)."""

from __future__ import annotations

import numpy as np

from m3e.data.records import Source


def mine(embedder, source: Source, corpus: list[str], *, rank_range: tuple[int, int] = (10, 100),
         num_negatives: int = 7, margin: float = 0.95, query_prompt: str | None = None,
         passage_prompt: str | None = None, seed: int = 42, batch: int = 256) -> tuple[list[dict], dict]:
    """BGE-format rows ``{"query", "pos": [...], "neg": [...]}`` and counts of what was skipped and why.

    A candidate is a negative when it ranks within ``rank_range`` (1-based, inclusive start, exclusive end), is
    not the positive or the query itself, and its similarity is below ``margin`` times the positive's.
    """
    from m3e.models.encoding import named_prompt, role_prompt

    qp = named_prompt(embedder, query_prompt or role_prompt(embedder, "query"))
    pp = named_prompt(embedder, passage_prompt or role_prompt(embedder, "passage"))
    corpus = list(dict.fromkeys(corpus + [r.positive for r in source.records]))
    doc_vecs = embedder.encode(corpus, prompt=pp)
    queries = [r.anchor for r in source.records]
    q_vecs = embedder.encode(queries, prompt=qp)
    p_vecs = embedder.encode([r.positive for r in source.records], prompt=pp)
    rng = np.random.default_rng(seed)
    lo, hi = rank_range
    rows, counts = [], {"too_similar (margin)": 0, "fewer negatives than asked": 0}
    for start in range(0, len(queries), batch):
        sims = q_vecs[start:start + batch] @ doc_vecs.T
        for k, row in enumerate(sims):
            i = start + k
            rec = source.records[i]
            pos_sim = float(q_vecs[i] @ p_vecs[i])
            order = np.argsort(-row, kind="stable")[lo - 1:hi - 1]
            picked = []
            for j in order:
                text = corpus[j]
                if text in (rec.positive, rec.anchor) or text in rec.negatives:
                    continue
                if row[j] >= margin * pos_sim:
                    counts["too_similar (margin)"] += 1
                    continue
                picked.append(text)
            if len(picked) > num_negatives:
                picked = [picked[x] for x in sorted(rng.choice(len(picked), num_negatives, replace=False))]
            if len(picked) < num_negatives:
                counts["fewer negatives than asked"] += 1
            rows.append({"query": rec.anchor, "pos": [rec.positive], "neg": rec.negatives + picked})
    return rows, counts
