"""Dynamic batching under supervision: one inference worker per model merges queued requests into
length-sorted, token-budgeted batches, and a supervisor keeps a worker alive.

Requests are tokenized in the handler; the worker takes every queued request up to a token budget, drops those
whose client has gone, embeds all their units in one :meth:`Embedder.embed_units` call (which sorts by length
and cuts batches by the budget) and hands each request its rows. An exception fails only that batch's
requests. If the worker thread itself ever dies, the requests it held fail, the supervisor starts a new one
(counted in ``m3e_worker_restarts``), and :meth:`Batcher.alive` is false meanwhile (``/health`` says 503).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import torch

from ..utils.memory import HeapTrimmer

log = logging.getLogger("m3e.serve")


class QueueFull(Exception):
    pass


class Stopped(Exception):
    pass


class WorkerDied(RuntimeError):
    """The inference worker ended while it held this request."""


@dataclass
class Job:
    units: list  # content-id sequences (int32 arrays or lists)
    future: Future = field(default_factory=Future)
    cancelled: bool = False
    tokens: int = 0

    def __post_init__(self) -> None:
        self.tokens = sum(len(u) + 2 for u in self.units)


def settle(future: Future, result=None, error: BaseException | None = None) -> bool:
    """Give a future its result or error unless it is already done or cancelled (a client that left may cancel
    it at any moment, so checking first and setting after is a race)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
        return True
    except InvalidStateError:
        return False


class Batcher:
    def __init__(self, embedder, *, name: str, max_batch_tokens: int = 16384, batch_size: int = 128,
                 queue_size: int = 256, metrics=None, budget=None, restart_delay: float = 0.5,
                 trim_interval: float = 1.0) -> None:
        self.embedder = embedder
        self.name = name
        self.max_batch_tokens = max_batch_tokens
        self.batch_size = batch_size
        self.queue_size = queue_size
        self.metrics = metrics
        self.budget = budget  # a TokenBudget to feed the throughput estimate, or None
        self.restart_delay = restart_delay
        self.restarts = 0
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._wake = threading.Event()  # cuts the supervisor's restart delay short (stop, tests)
        self.trimmer = HeapTrimmer(trim_interval)  # keeps RSS flat over a long run (see utils/memory.py)
        self._start_worker()
        self._supervisor = threading.Thread(target=self._supervise, name=f"m3e-supervisor-{name}", daemon=True)
        self._supervisor.start()

    # ---- the interface the app uses ------------------------------------------------------------------------
    def depth(self) -> int:
        return len(self._queue)

    def alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def submit(self, units: list) -> Job:
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
            self._cond.notify_all()
        self._wake.set()
        deadline = time.monotonic() + timeout
        self._supervisor.join(timeout)
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()))

    # ---- supervision ---------------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._run, name=f"m3e-infer-{self.name}", daemon=True)
        self._worker.start()
        if self.metrics is not None:
            self.metrics.worker_alive.labels(self.name).set(1)

    def _supervise(self) -> None:
        while True:
            self._worker.join()
            with self._cond:
                if self._stopping and not self._queue:
                    return
            if self.metrics is not None:
                self.metrics.worker_alive.labels(self.name).set(0)
            log.error("inference worker for %s died; restarting it in %.1fs", self.name, self.restart_delay)
            self._wake.wait(self.restart_delay)
            self._wake.clear()
            self.restarts += 1
            if self.metrics is not None:
                self.metrics.worker_restarts.labels(self.name).inc()
            self._start_worker()

    # ---- the worker ----------------------------------------------------------------------------------------
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
                if job.cancelled or job.future.cancelled():
                    if self.metrics is not None:
                        self.metrics.dropped.labels(self.name).inc()
                    job.future.cancel()
                    continue
                jobs.append(job)
                budget += job.tokens
            self._gauge()
            return jobs

    def _run(self) -> None:
        jobs: list[Job] = []
        try:
            while True:
                jobs = self._take()
                if not jobs:
                    if self._stopping and not self._queue:
                        return
                    continue
                self._embed(jobs)
                jobs = []
                self.trimmer.maybe_trim()
        finally:  # the worker is dying (BaseException, or a bug above): the requests it held must not hang
            for job in jobs:
                settle(job.future, error=WorkerDied(f"the inference worker for {self.name} stopped"))

    def _embed(self, jobs: list[Job]) -> None:
        units = [u for job in jobs for u in job.units]
        start = time.perf_counter()
        try:
            pooled = self.embedder.embed_units(units, self.batch_size, self.max_batch_tokens)
        except Exception as exc:  # noqa: BLE001 - only this batch's requests fail; the worker goes on
            log.exception("embedding a batch of %d texts for %s failed", len(units), self.name)
            if self.metrics is not None:
                self.metrics.batch_errors.labels(self.name).inc()
            for job in jobs:
                settle(job.future, error=exc)
            return
        tokens = sum(job.tokens for job in jobs)
        if self.metrics is not None:
            self.metrics.batch_inputs.labels(self.name).observe(len(units))
            self.metrics.tokens.labels(self.name).inc(tokens)
        if self.budget is not None:
            self.budget.observe(tokens, time.perf_counter() - start)
        offset = 0
        for job in jobs:
            rows = pooled[offset:offset + len(job.units)]
            offset += len(job.units)
            settle(job.future, torch.as_tensor(rows))
