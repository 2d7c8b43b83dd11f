"""What every route shares: the served models, readiness, API keys, body limits, the token budget, and the one
path from texts to vectors (tokenize, admit, queue, wait, combine)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from m3e.errors import InputError, InputTooLong
from m3e.models.encoding import named_prompt, role_prompt
from m3e.serving.admission import TokenBudget, pre_read_reservation
from m3e.serving.batcher import Batcher, QueueFull, Stopped
from m3e.serving.errors import APIError
from m3e.serving.metrics import ServerMetrics

log = logging.getLogger("m3e.serve")
BIG_RESPONSE = 64  # vectors: serialize larger responses in a worker thread, off the event loop


@dataclass
class ServeConfig:
    models: list[str] = field(default_factory=list)  # "name", "path" or "alias=name-or-path"
    rerankers: list[str] = field(default_factory=list)  # cross-encoders for /v1/rerank and /rerank, same forms
    max_documents: int = 1000  # most documents in one rerank request
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = field(default_factory=list)
    max_batch_tokens: int = 16384
    batch_size: int = 128
    max_inputs: int = 2048
    max_body_bytes: int = 16 * 1024 * 1024
    queue_size: int = 256  # requests waiting per model
    max_queue_tokens: int = 1 << 20  # tokens admitted at once, all models (one full 2,048 x 512 request fits)
    truncate: bool = True  # False: refuse over-long inputs with 413
    prompt_name: str | None = None  # default prompt for every model; None: the model's "query" prompt if any
    device: str | None = None
    threads: int | None = None
    backend: str = "torch"  # torch, onnx or onnx-int8 (see m3e.models.onnx_runtime)
    trust_remote_code: bool = False
    cl100k_file: str | None = None


def split_spec(spec: str) -> tuple[str, str]:
    """``alias=target`` when the part before '=' looks like a name, else the target is its own alias."""
    alias, sep, target = spec.partition("=")
    if sep and alias and "/" not in alias and target:
        return alias, target
    return spec, spec


@dataclass
class ServedModel:
    alias: str
    embedder: object
    batcher: Batcher
    prompt_name: str | None  # default prompt name for requests that do not say


@dataclass
class Embedded:
    vectors: np.ndarray
    tokens: int
    truncated: int


@dataclass
class Reranked:
    scores: np.ndarray  # the model's logits, one per document in request order
    relevance: np.ndarray  # the same in [0, 1] (sigmoid)
    tokens: int
    stats: object  # m3e.models.reranker.RerankStats: windows read, documents cut


class Ticket:
    """A request's share of the token budget, from before its body is read until its response is written."""

    def __init__(self, budget: TokenBudget, tokens: int) -> None:
        self.budget, self.tokens = budget, budget.reserve(tokens)

    def resize(self, tokens: int) -> None:
        self.tokens = self.budget.reserve(tokens, have=self.tokens)


class EmbeddingService:
    def __init__(self, config: ServeConfig, load=None, load_reranker=None) -> None:
        """``load(target) -> Embedder`` defaults to :func:`m3e.models.resolver.load_model` with the config's
        options, ``load_reranker(target) -> Reranker`` to :func:`m3e.models.resolver.load_reranker`."""
        self.config = config
        self.metrics = ServerMetrics()
        self.models: dict[str, ServedModel] = {}
        self.rerankers: dict[str, ServedModel] = {}
        self.loaded = False
        self.draining = False
        self.error: str | None = None
        self.budget = TokenBudget(config.max_queue_tokens, self.metrics)
        self.request_counts: dict = {"started": 0, "answered": 0, "by_status": {}}  # HTTP requests since start
        self._keys = [k.encode() for k in config.api_keys if k]
        self._load = load or self._load_model
        self._load_reranker = load_reranker or self._load_reranker_model

    # ---- life cycle ----------------------------------------------------------------------------------------
    def _load_model(self, target: str):
        from m3e.models.resolver import load_model

        c = self.config
        return load_model(target, device=c.device, trust_remote_code=c.trust_remote_code, threads=c.threads,
                          backend=c.backend)

    def _load_reranker_model(self, target: str):
        from m3e.models.resolver import load_reranker

        c = self.config
        return load_reranker(target, device=c.device, trust_remote_code=c.trust_remote_code, threads=c.threads,
                             backend=c.backend)

    def served(self) -> list[ServedModel]:
        """Every served model, embedders then rerankers."""
        return [*self.models.values(), *self.rerankers.values()]

    def load_all(self) -> None:
        """Load, check and warm up every model; errors are kept for /health (this runs in a thread)."""
        try:
            for spec in self.config.models:
                alias, target = split_spec(spec)
                embedder = self._load(target)
                prompt = self.config.prompt_name
                if prompt is None:
                    prompt = role_prompt(embedder, "query")
                else:
                    named_prompt(embedder, prompt)  # an unknown name stops the server here, with the model's list
                embedder.encode(["预热 warm-up"] * 2)  # first call allocates; keep it out of request latency
                batcher = Batcher(embedder, name=alias, max_batch_tokens=self.config.max_batch_tokens,
                                  batch_size=self.config.batch_size, queue_size=self.config.queue_size,
                                  metrics=self.metrics, budget=self.budget)
                self.models[alias] = ServedModel(alias, embedder, batcher, prompt)
            for spec in self.config.rerankers:
                alias, target = split_spec(spec)
                reranker = self._load_reranker(target)
                reranker.score("预热 warm-up", ["warm-up", "预热"])
                batcher = Batcher(reranker, name=alias, max_batch_tokens=self.config.max_batch_tokens,
                                  batch_size=self.config.batch_size, queue_size=self.config.queue_size,
                                  metrics=self.metrics, budget=self.budget)
                self.rerankers[alias] = ServedModel(alias, reranker, batcher, None)
            self.loaded = True
        except Exception as exc:  # noqa: BLE001 - reported by /health and the log
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("loading the models failed: %s", self.error)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.load_all, name="m3e-load", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Refuse new work; let every model's queue drain."""
        self.draining = True
        for m in self.served():
            m.batcher.stop()

    # ---- checks --------------------------------------------------------------------------------------------
    def authorize(self, request: Request) -> None:
        if not self._keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        ok = False
        for key in self._keys:  # constant time per key, and no early exit
            ok |= hmac.compare_digest(given, key)
        if not ok:
            raise APIError(401, "missing or invalid API key (send 'Authorization: Bearer KEY')",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def check_ready(self) -> None:
        if self.draining:
            raise APIError(503, "server is shutting down", code="shutting_down", headers={"Retry-After": "1"})
        if not self.loaded:
            msg = f"model failed to load: {self.error}" if self.error else "model is loading"
            raise APIError(503, msg, code="not_ready", headers={"Retry-After": "2"})
        dead = [m.alias for m in self.served() if not m.batcher.alive()]
        if dead:
            raise APIError(503, f"the inference worker of {', '.join(dead)} is not running; it is being restarted",
                           code="worker_down", headers={"Retry-After": "1"})

    def pick(self, name: str | None) -> ServedModel:
        if not self.models:
            raise APIError(404, "no embedding model is served here (only rerankers: POST /v1/rerank); start the "
                                "server with --model NAME", param="model", code="model_not_found")
        if not name:  # clients that omit the model get the first one served
            return next(iter(self.models.values()))
        if name in self.rerankers:
            raise APIError(400, f"'{name}' is a reranker (it scores a query with documents, it gives no vectors); "
                                f"send it to POST /v1/rerank. Embedding models here: {', '.join(self.models)}",
                           param="model", code="wrong_model_kind")
        if name not in self.models:
            raise APIError(404, f"model '{name}' is not served here; available: {', '.join(self.models)}",
                           param="model", code="model_not_found")
        return self.models[name]

    def pick_reranker(self, name: str | None) -> ServedModel:
        if name and name in self.models:
            raise APIError(400, f"'{name}' is an embedding model, not a reranker; send it to POST /v1/embeddings"
                                + (f". Rerankers here: {', '.join(self.rerankers)}" if self.rerankers else ""),
                           param="model", code="wrong_model_kind")
        if not self.rerankers:
            raise APIError(404, "no reranker is served here; start the server with --reranker NAME (a CrossEncoder "
                                "folder, a hub id or a built-in reranker)", param="model", code="model_not_found")
        if not name:
            return next(iter(self.rerankers.values()))
        if name not in self.rerankers:
            raise APIError(404, f"reranker '{name}' is not served here; available: {', '.join(self.rerankers)}",
                           param="model", code="model_not_found")
        return self.rerankers[name]

    def prompt(self, model: ServedModel, name: str | None, param: str, optional: bool = False) -> str:
        """The prompt text of ``name`` for ``model``; an unknown name is a 400 naming the model's prompts."""
        try:
            return named_prompt(model.embedder, name, optional=optional)
        except InputError as exc:
            raise APIError(400, str(exc), param=param, code="invalid_value") from None

    # ---- request bodies ------------------------------------------------------------------------------------
    @asynccontextmanager
    async def admitted(self, request: Request):
        """Reserve the body's token estimate before reading it (429 at once when the budget is spent); give the
        reservation back when the response is ready."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise APIError(415, f"Content-Type must be application/json, not '{ctype or 'none'}'",
                           code="unsupported_media_type")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.config.max_body_bytes:
            raise APIError(413, f"request body of {declared} bytes is over the limit of {self.config.max_body_bytes}",
                           code="body_too_large")
        ticket = Ticket(self.budget, pre_read_reservation(declared, self.config.max_body_bytes, self.budget.limit))
        try:
            yield ticket
        finally:
            self.budget.release(ticket.tokens)

    async def read_body(self, request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.config.max_body_bytes:
                raise APIError(413, f"request body is over the limit of {self.config.max_body_bytes} bytes",
                               code="body_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    # ---- texts -> vectors ----------------------------------------------------------------------------------
    async def embed(self, model: ServedModel, texts: list[str], prompt: str, request: Request,
                    ticket: Ticket) -> Embedded | None:
        """Normalized vectors through the model's batcher; None when the client left before they were ready."""
        emb = model.embedder
        try:
            prepared = await run_in_threadpool(emb.prepare, texts, prompt=prompt,
                                               truncate="truncate" if self.config.truncate else "error")
        except InputTooLong as exc:
            raise APIError(413, f"input too long: {exc} (this server refuses over-long inputs)", param="input",
                           code="context_length_exceeded") from None
        except InputError as exc:
            raise APIError(400, str(exc), param="input") from None
        prepared.units = [np.asarray(u, dtype=np.int32) for u in prepared.units]  # 4 bytes a token while queued
        ticket.resize(sum(prepared.tokens))
        rows = await self._run(model, prepared.units, request)
        if rows is None:
            return None
        vectors = emb.combine(prepared, rows, normalize=True)
        if prepared.stats.truncated:
            self.metrics.truncated.labels(model.alias).inc(len(prepared.stats.truncated))
        return Embedded(vectors, sum(prepared.tokens), len(prepared.stats.truncated))

    async def rerank(self, model: ServedModel, query: str, documents: list[str], request: Request, ticket: Ticket,
                     truncate: str, max_windows: int | None = None) -> Reranked | None:
        """Scores of each document for the query through the reranker's batcher; None when the client left."""
        rr = model.embedder
        if truncate == "window" and not self.config.truncate:
            truncate = "error"
        try:
            prepared = await run_in_threadpool(rr.prepare, query, documents, truncate=truncate,
                                               max_windows=max_windows)
        except InputTooLong as exc:
            raise APIError(413, f"input too long: {exc}", param="documents", code="context_length_exceeded") from None
        except InputError as exc:
            raise APIError(400, str(exc), param="documents") from None
        ticket.resize(sum(prepared.tokens))
        rows = await self._run(model, prepared.units, request)
        if rows is None:
            return None
        raw = rr.combine(prepared, rows, raw=True)
        stats = prepared.stats
        if stats.truncated:
            self.metrics.truncated.labels(model.alias).inc(len(stats.truncated))
        return Reranked(raw, rr.activate(raw), sum(prepared.tokens), stats)

    async def _run(self, model: ServedModel, units: list, request: Request):
        """Queue ``units`` on the model's batcher and wait for their rows (None when the client left first)."""
        try:
            job = model.batcher.submit(units)
        except QueueFull:
            self.metrics.rejected.labels("queue_size").inc()
            raise APIError(429, "the server is busy (queue full); retry shortly", code="queue_full",
                           headers={"Retry-After": "1"}) from None
        except Stopped:
            raise APIError(503, "server is shutting down", code="shutting_down") from None
        result = asyncio.wrap_future(job.future)
        gone = asyncio.ensure_future(_client_left(request))
        try:
            await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not result.done():
            job.cancelled = True
            result.cancel()
            return None
        error = result.exception()
        if error is not None:
            raise APIError(500, f"inference failed: {type(error).__name__}: {error}", code="inference_error")
        return result.result()

    async def serialize(self, fn, vectors: np.ndarray, *args) -> bytes:
        if len(vectors) > BIG_RESPONSE:
            return await run_in_threadpool(fn, vectors, *args)
        return fn(vectors, *args)


async def _client_left(request: Request) -> None:
    """Returns when the client disconnects (the body is read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
