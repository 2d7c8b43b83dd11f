"""The M3E batch plan: every batch from one source, no duplicate text inside a batch, seeded per epoch.

Why one source per batch: in-batch negatives from the same domain are informative, and mixing record kinds
(pairs vs scored pairs) in one batch would not fit one loss. Why no duplicates: a text that appears twice in a
batch is its own false negative. The plan of an epoch is a pure function of (seed, epoch), so a resumed run
replays it and skips the batches already trained.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from m3e.data.records import Record, Source


@dataclass
class PlanStats:
    batches: dict[str, int]
    deferred_to_next_pass: dict[str, int]
    left_over: dict[str, int]  # records that did not fill a last full batch this epoch


def _texts(record: Record) -> list[str]:
    return [record.anchor, record.positive, *record.negatives]


def source_batches(records: list[Record], batch_size: int, rng: random.Random) -> tuple[list[list[int]], int, int]:
    """One shuffled pass over a source, cut into full batches with no repeated text.

    A record whose text is already in the batch being filled waits for the next batch (never dropped while a
    later batch can take it). Returns (batches, records deferred at least once, records left over at the end).
    """
    order = list(range(len(records)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    waiting: list[int] = []
    deferred = 0
    current: list[int] = []
    seen: set[str] = set()
    queue = order
    while queue:
        next_round: list[int] = []
        for i in queue:
            texts = _texts(records[i])
            if seen.isdisjoint(texts):
                current.append(i)
                seen.update(texts)
                if len(current) == batch_size:
                    batches.append(current)
                    current, seen = [], set()
                    # retry the records that clashed with the finished batch
                    next_round.extend(waiting)
                    waiting = []
            else:
                waiting.append(i)
                deferred += 1
        if not next_round:
            break
        queue = next_round
    left = len(current) + len(waiting)
    return batches, deferred, left


def epoch_plan(sources: list[Source], batch_size: int, seed: int, epoch: int) -> tuple[list[tuple[int, list[int]]],
                                                                                         PlanStats]:
    """[(source index, record indices)] for one epoch, sources interleaved at random in proportion to their
    batch counts times their weights."""
    rng = random.Random(f"{seed}:{epoch}")
    schedule: list[tuple[int, list[int]]] = []
    stats = PlanStats({}, {}, {})
    for s, source in enumerate(sources):
        batches, deferred, left = source_batches(source.records, batch_size, rng)
        want = round(len(batches) * source.weight)
        taken = list(batches)
        passes = 1
        while len(taken) < want and batches:  # weight > 1: more passes, each reshuffled
            more, d, _ = source_batches(source.records, batch_size, rng)
            taken.extend(more)
            deferred += d
            passes += 1
        taken = taken[:want]
        schedule.extend((s, b) for b in taken)
        stats.batches[source.name] = len(taken)
        stats.deferred_to_next_pass[source.name] = deferred
        stats.left_over[source.name] = left
    rng.shuffle(schedule)
    return schedule, stats
