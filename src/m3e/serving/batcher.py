"""Dynamic batching under supervision: one inference worker per model merges queued requests into
length-sorted, token-budgeted batches, and a supervisor keeps a worker alive.

Requests are tokenized in the handler; each round the worker takes units from the queued requests in order up to
a round budget (a few batches' tokens), drops requests whose client has gone, embeds the round's units in one
:meth:`Embedder.embed_units` call (which sorts by length and cuts batches by the budget) and hands each finished
request its rows. A request larger than one round is embedded a slice per round and goes back to the end of the
queue in between: a 2,048-text request never holds the worker for minutes while one-sentence requests wait, and
if its client leaves, its remaining slices are never embedded. An exception fails only that round's requests.
If the worker thread itself ever dies, the requests it held fail, the supervisor starts a new one
(counted in ``m3e_worker_restarts``), and :meth:`Batcher.alive` is false meanwhile (``/health`` says 503).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import numpy as np

from ..utils.memory import HeapTrimmer

log = logging.getLogger("m3e.serve")
ROUND_SECONDS = 0.5  # the work one round of the worker holds it for, at the measured speed


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
    done: int = 0  # units embedded so far (a large request is embedded a slice per round)
    rows: list = field(default_factory=list)  # the embedded slices, in order

    def __post_init__(self) -> None:
        self.tokens = sum(len(u) + 2 for u in self.units)

    @property
    def gone(self) -> bool:
        return self.cancelled or self.future.cancelled()


@dataclass
class Slice:
    job: Job
    start: int
    end: int


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
        self._rate = 0.0  # tokens embedded per second, smoothed (sizes the rounds)
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

    @property
    def round_tokens(self) -> int:
        """Tokens embedded per round: about ``ROUND_SECONDS`` of work at the measured speed (so a request arriving
        now, or a client leaving now, waits at most that long), between one batch's and four batches' budget."""
        if self._rate <= 0:
            return self.max_batch_tokens
        return int(min(4 * self.max_batch_tokens, max(256, self._rate * ROUND_SECONDS)))

    def _take(self) -> list[Slice]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            taken: list[Slice] = []
            unfinished: list[Job] = []
            room = self.round_tokens
            while self._queue and room > 0:
                job = self._queue.popleft()
                if job.gone:
                    if self.metrics is not None:
                        self.metrics.dropped.labels(self.name).inc()
                    job.future.cancel()
                    continue
                end = job.done
                while end < len(job.units) and (end == job.done and not taken or len(job.units[end]) + 2 <= room):
                    room -= len(job.units[end]) + 2
                    end += 1
                if end == job.done:  # not even one unit fits what is left of this round
                    self._queue.appendleft(job)
                    break
                taken.append(Slice(job, job.done, end))
                if end < len(job.units):
                    unfinished.append(job)
            self._queue.extend(unfinished)  # the rest of a large request waits behind the requests now queued
            self._gauge()
            return taken

    def _run(self) -> None:
        taken: list[Slice] = []
        try:
            while True:
                taken = self._take()
                if not taken:
                    if self._stopping and not self._queue:
                        return
                    continue
                self._embed(taken)
                taken = []
                self.trimmer.maybe_trim()
        finally:  # the worker is dying (BaseException, or a bug above): the requests it held must not hang
            for piece in taken:
                piece.job.cancelled = True  # its other slices (queued) are dropped by the next worker
                settle(piece.job.future, error=WorkerDied(f"the inference worker for {self.name} stopped"))

    def _embed(self, taken: list[Slice]) -> None:
        units = [u for piece in taken for u in piece.job.units[piece.start:piece.end]]
        start = time.perf_counter()
        try:
            pooled = self.embedder.embed_units(units, self.batch_size, self.max_batch_tokens)
        except Exception as exc:  # noqa: BLE001 - only this round's requests fail; the worker goes on
            log.exception("embedding a batch of %d texts for %s failed", len(units), self.name)
            if self.metrics is not None:
                self.metrics.batch_errors.labels(self.name).inc()
            for piece in taken:
                piece.job.cancelled = True  # a failed request's other slices are not embedded
                settle(piece.job.future, error=exc)
            return
        tokens = sum(len(u) + 2 for u in units)
        rate = tokens / max(time.perf_counter() - start, 1e-6)
        self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
        if self.metrics is not None:
            self.metrics.batch_inputs.labels(self.name).observe(len(units))
            self.metrics.tokens.labels(self.name).inc(tokens)
        if self.budget is not None:
            self.budget.observe(tokens, time.perf_counter() - start)
        offset = 0
        for piece in taken:
            job, n = piece.job, piece.end - piece.start
            job.rows.append(np.asarray(pooled[offset:offset + n]))
            job.done = piece.end
            offset += n
            if job.done == len(job.units):
                settle(job.future, job.rows[0] if len(job.rows) == 1 else np.concatenate(job.rows))
                job.rows = []
