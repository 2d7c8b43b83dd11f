"""The M3E batch plan: every batch from one source, no duplicate text inside a batch, seeded per epoch.

Why one source per batch: in-batch negatives from the same domain are informative, and mixing record kinds
(pairs vs scored pairs) in one batch would not fit one loss. Why no duplicates: a text that appears twice in a
batch is its own false negative. The plan of an epoch is a pure function of (seed, epoch), so every rank of a
distributed run computes the same one and a resumed run replays it and skips the batches already trained.

Plans are arrays: record positions per batch (batches x batch size) and the source of each batch, computed from
each source's text hashes (:meth:`~m3e.data.records.Source.hashes`). A run of ``batch_size`` shuffled records
without a repeated hash becomes a batch in one step; only where texts repeat does the plan go record by record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PlanStats:
    batches: dict[str, int]
    deferred_to_next_pass: dict[str, int]
    left_over: dict[str, int]  # records that did not fill a last full batch this epoch


@dataclass
class EpochPlan:
    source: np.ndarray  # (batches,) index of each batch's source
    rows: np.ndarray  # (batches, batch size) record positions within that source
    stats: PlanStats

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        return int(self.source[i]), self.rows[i]


def source_batches(hashes: np.ndarray, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """One shuffled pass over a source, cut into full batches with no repeated text.

    The rule, record by record: a record whose text is already in the batch being filled waits; each new batch
    first takes the waiting records that fit (oldest first), then the next records of the shuffled order. So a
    repeated text lands in as many batches as it takes, and nothing is dropped while a batch can take it.
    Returns (batches x batch_size positions, records that waited at least once, records left over at the end).
    """
    n = len(hashes)
    out = np.empty((n // batch_size, batch_size), dtype=np.int64)
    order = rng.permutation(n)
    count = deferred = pos = 0
    current: list[int] = []
    seen: set[int] = set()
    waiting: list[int] = []

    def texts(k: int) -> list[int]:
        return [t for t in np.asarray(hashes[k]).tolist() if t]

    def emit() -> None:
        nonlocal count, current, seen
        out[count] = current
        count += 1
        current, seen = [], set()

    while True:
        if not current and waiting:  # a new batch: the waiting records first
            still = []
            for k in waiting:
                t = texts(k)
                if len(current) < batch_size and seen.isdisjoint(t):
                    current.append(k)
                    seen.update(t)
                else:
                    still.append(k)
            waiting = still
            if len(current) == batch_size:
                emit()
                continue
        if not current and not waiting:  # the fast path: clean runs of batch_size records at once
            while pos + batch_size <= n:
                cand = order[pos:pos + batch_size]
                h = np.asarray(hashes[np.sort(cand)]).ravel()
                h = h[h != 0]
                if np.unique(h).size != h.size:
                    break
                out[count] = cand
                count += 1
                pos += batch_size
        if pos >= n:
            break
        k = int(order[pos])
        pos += 1
        t = texts(k)
        if seen.isdisjoint(t):
            current.append(k)
            seen.update(t)
            if len(current) == batch_size:
                emit()
        else:
            waiting.append(k)
            deferred += 1
    return out[:count], deferred, len(current) + len(waiting)


def epoch_plan(sources, batch_size: int, seed: int, epoch: int) -> EpochPlan:
    """One epoch's batches, sources interleaved at random in proportion to their batch counts times their weights
    (weight 2: two passes, each reshuffled; 0.5: half of one pass)."""
    parts: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    stats = PlanStats({}, {}, {})
    for s, source in enumerate(sources):
        hashes = source.hashes()
        rng = np.random.default_rng([seed, epoch, s])
        batches, deferred, left = source_batches(hashes, batch_size, rng)
        want = round(len(batches) * source.weight)
        taken = [batches]
        have = len(batches)
        while have < want and len(batches):  # weight > 1: more passes, each reshuffled
            more, d, _ = source_batches(hashes, batch_size, rng)
            taken.append(more)
            have += len(more)
            deferred += d
        chosen = np.concatenate(taken)[:want] if taken else np.zeros((0, batch_size), dtype=np.int64)
        parts.append(chosen)
        owners.append(np.full(len(chosen), s, dtype=np.int32))
        stats.batches[source.name] = len(chosen)
        stats.deferred_to_next_pass[source.name] = deferred
        stats.left_over[source.name] = left
    rows = np.concatenate(parts) if parts else np.zeros((0, batch_size), dtype=np.int64)
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int32)
    order = np.random.default_rng([seed, epoch, len(sources)]).permutation(len(rows))
    if rows.size and rows.max() < 2**31:
        rows = rows.astype(np.int32)
    return EpochPlan(owner[order], rows[order], stats)
