"""Dynamic batching: one inference worker per model merges queued requests into length-sorted,
token-budgeted batches.

Requests are tokenized in the handler; the worker takes every queued request up to a token budget, drops those
whose client has gone, embeds all their units in one :meth:`Embedder.embed_units` call (which sorts by length
and cuts batches by the budget) and hands each request its rows. The queue is bounded: a full queue refuses
new work at once (the server answers 429), so load never piles up unseen.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch


class QueueFull(Exception):
    pass


class Stopped(Exception):
    pass


@dataclass
class Job:
    units: list[list[int]]
    future: Future = field(default_factory=Future)
    cancelled: bool = False
    tokens: int = 0

    def __post_init__(self) -> None:
        self.tokens = sum(len(u) + 2 for u in self.units)


class Batcher:
    def __init__(self, embedder, *, name: str, max_batch_tokens: int = 16384, batch_size: int = 128,
                 queue_size: int = 256, metrics=None) -> None:
        self.embedder = embedder
        self.name = name
        self.max_batch_tokens = max_batch_tokens
        self.batch_size = batch_size
        self.queue_size = queue_size
        self.metrics = metrics
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"m3e-infer-{name}", daemon=True)
        self._thread.start()

    def depth(self) -> int:
        return len(self._queue)

    def submit(self, units: list[list[int]]) -> Job:
        job = Job(units)
        with self._cond:
            if self._stopping:
                raise Stopped()
            if len(self._queue) >= self.queue_size:
                raise QueueFull()
            self._queue.append(job)
            self._gauge()
            self._cond.notify()
        return job

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new work, finish what is queued, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.name).set(len(self._queue))

    def _take(self) -> list[Job]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            jobs: list[Job] = []
            budget = 0
            # A few batches' worth per round: enough to sort lengths across requests, small enough that the
            # first requests in line are not held back by a long queue.
            while self._queue and (not jobs or budget + self._queue[0].tokens <= 4 * self.max_batch_tokens):
                job = self._queue.popleft()
                if job.cancelled:
                    if self.metrics is not None:
                        self.metrics.dropped.labels(self.name).inc()
                    job.future.cancel()
                    continue
                jobs.append(job)
                budget += job.tokens
            self._gauge()
            return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if not jobs:
                if self._stopping and not self._queue:
                    return
                continue
            units = [u for job in jobs for u in job.units]
            try:
                pooled = self.embedder.embed_units(units, self.batch_size, self.max_batch_tokens)
                if self.metrics is not None:
                    self.metrics.batch_inputs.labels(self.name).observe(len(units))
                    self.metrics.tokens.labels(self.name).inc(sum(job.tokens for job in jobs))
            except Exception as exc:  # noqa: BLE001 - every waiting request must hear about it
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            offset = 0
            for job in jobs:
                rows = pooled[offset:offset + len(job.units)]
                offset += len(job.units)
                if job.future.set_running_or_notify_cancel():
                    job.future.set_result(torch.as_tensor(rows))
