"""The FastAPI app: routes, auth, limits, readiness, metrics. Models load in the background after start-up so
``/health`` can say 503 until they are loaded and warmed up (and again while shutting down)."""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from m3e.errors import InputError, M3EError
from m3e.serving.batcher import Batcher, QueueFull, Stopped
from m3e.serving.errors import APIError, error_response
from m3e.serving.metrics import ServerMetrics
from m3e.serving.protocol import parse_inputs, parse_request, response_body, shape_vectors

KNOWN_ROUTES = {"/v1/embeddings", "/embeddings", "/v1/models", "/health", "/metrics", "/embed", "/similarity"}


@dataclass
class ServeConfig:
    models: list[str] = field(default_factory=list)  # "name", "path" or "alias=name-or-path"
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = field(default_factory=list)
    max_batch_tokens: int = 16384
    batch_size: int = 128
    max_inputs: int = 2048
    max_body_bytes: int = 16 * 1024 * 1024
    queue_size: int = 256
    truncate: bool = True  # False: refuse over-long inputs with 413
    prompt_name: str | None = None  # default prompt for every model; None: the model's "query" prompt if any
    device: str | None = None
    threads: int | None = None
    backend: str = "torch"  # torch, onnx or onnx-int8 (see m3e.models.onnx_backend)
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


class ClientGone(Exception):
    pass


class CountRequests:
    """Requests by route and status. Plain ASGI: Starlette's BaseHTTPMiddleware would hide client disconnects
    from the handlers, and the batcher relies on seeing them."""

    def __init__(self, app, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope["path"] if scope["path"] in KNOWN_ROUTES else "other"
            self.metrics.requests.labels(route, str(status["code"])).inc()


def create_app(config: ServeConfig, load=None) -> FastAPI:
    """``load(target) -> Embedder`` defaults to :func:`m3e.models.resolver.load_model` with the config's options."""
    metrics = ServerMetrics()
    served: dict[str, ServedModel] = {}
    state = {"ready": False, "draining": False, "error": None}
    keys = [k.encode() for k in config.api_keys if k]

    def default_load(target: str):
        from m3e.models.resolver import load_model

        return load_model(target, device=config.device, trust_remote_code=config.trust_remote_code,
                          threads=config.threads, backend=config.backend)

    loader = load or default_load

    def load_all() -> None:
        try:
            for spec in config.models:
                alias, target = split_spec(spec)
                embedder = loader(target)
                prompt = config.prompt_name
                if prompt is None:
                    prompt = "query" if "query" in embedder.prompts else None
                elif prompt not in embedder.prompts:
                    raise InputError(f"model {alias} has no prompt named '{prompt}' (it has: "
                                     f"{', '.join(embedder.prompts) or 'none'})")
                embedder.encode(["预热 warm-up"] * 2)  # first call allocates; keep it out of request latency
                batcher = Batcher(embedder, name=alias, max_batch_tokens=config.max_batch_tokens,
                                  batch_size=config.batch_size, queue_size=config.queue_size, metrics=metrics)
                served[alias] = ServedModel(alias, embedder, batcher, prompt)
            state["ready"] = True
        except Exception as exc:  # noqa: BLE001 - reported by /health and the log
            state["error"] = f"{type(exc).__name__}: {exc}"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load_all, name="m3e-load", daemon=True).start()
        yield
        state["draining"] = True
        for m in served.values():
            await run_in_threadpool(m.batcher.stop)

    app = FastAPI(title="m3e embeddings", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.m3e = state
    app.state.metrics = metrics
    app.state.served = served

    # ---- errors, all in OpenAI's shape ---------------------------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return error_response(404, f"no route {request.method} {request.url.path}", code="unknown_url")
        if exc.status_code == 405:
            return error_response(405, f"method {request.method} not allowed on {request.url.path}",
                                  code="method_not_allowed")
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return error_response(400, f"invalid request: {exc.errors()}", code="invalid_request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        return error_response(500, f"internal error: {type(exc).__name__}", code="internal_error")

    app.add_middleware(CountRequests, metrics=metrics)

    # ---- helpers -------------------------------------------------------------------------------------------
    def authorize(request: Request) -> None:
        if not keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        ok = False
        for key in keys:  # constant time per key, and no early exit
            ok |= hmac.compare_digest(given, key)
        if not ok:
            raise APIError(401, "missing or invalid API key (send 'Authorization: Bearer KEY')",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def ready() -> None:
        if state["draining"]:
            raise APIError(503, "server is shutting down", code="shutting_down", headers={"Retry-After": "1"})
        if not state["ready"]:
            msg = f"model failed to load: {state['error']}" if state["error"] else "model is loading"
            raise APIError(503, msg, code="not_ready", headers={"Retry-After": "2"})

    async def read_json(request: Request):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise APIError(415, f"Content-Type must be application/json, not '{ctype or 'none'}'",
                           code="unsupported_media_type")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_body_bytes:
            raise APIError(413, f"request body of {declared} bytes is over the limit of {config.max_body_bytes}",
                           code="body_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                raise APIError(413, f"request body is over the limit of {config.max_body_bytes} bytes",
                               code="body_too_large")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"invalid JSON body: {exc}", code="invalid_json") from None

    def pick(name: str | None) -> ServedModel:
        if not name:  # clients that omit the model get the first one served
            return next(iter(served.values()))
        if name not in served:
            raise APIError(404, f"model '{name}' is not served here; available: {', '.join(served)}",
                           param="model", code="model_not_found")
        return served[name]

    async def embed(model: ServedModel, texts: list[str], prompt_name: str | None, request: Request):
        """Texts -> normalized vectors, through the model's batcher; returns (vectors, tokens, truncated)."""
        emb = model.embedder
        prompt = emb.prompts.get(prompt_name, "") if prompt_name else ""
        try:
            prepared = await run_in_threadpool(emb.prepare, texts, prompt=prompt,
                                               truncate="truncate" if config.truncate else "error")
        except InputError as exc:
            raise APIError(413, f"input too long: {exc} (this server refuses over-long inputs)", param="input",
                           code="context_length_exceeded") from None
        try:
            job = model.batcher.submit(prepared.units)
        except QueueFull:
            raise APIError(429, "the server is busy (queue full); retry shortly", code="queue_full",
                           headers={"Retry-After": "1"}) from None
        except Stopped:
            raise APIError(503, "server is shutting down", code="shutting_down") from None
        fut = asyncio.wrap_future(job.future)
        while True:
            done, _ = await asyncio.wait({fut}, timeout=0.2)
            if done:
                break
            if await request.is_disconnected():
                job.cancelled = True
                fut.cancel()
                raise ClientGone()
        pooled = fut.result()
        vectors = emb.combine(prepared, pooled, normalize=True)
        if prepared.stats.truncated:
            metrics.truncated.labels(model.alias).inc(len(prepared.stats.truncated))
        return vectors, sum(prepared.tokens), len(prepared.stats.truncated)

    # ---- routes --------------------------------------------------------------------------------------------
    @app.post("/v1/embeddings")
    @app.post("/embeddings")
    async def embeddings(request: Request):
        start = time.perf_counter()
        authorize(request)
        ready()
        body = await read_json(request)
        req = parse_request(body, config.max_inputs, config.cl100k_file)
        model = pick(req.model)
        try:
            vectors, tokens, truncated = await embed(model, req.texts, req.input_type or model.prompt_name, request)
        except ClientGone:
            return Response(status_code=499)
        vectors = shape_vectors(vectors, req.dimensions, model.embedder.dim)
        out = response_body(vectors, model.alias, req.encoding_format, tokens)
        metrics.latency.labels(model.alias).observe(time.perf_counter() - start)
        headers = {"X-Truncated-Inputs": str(truncated)} if truncated else None
        return JSONResponse(out, headers=headers)

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [
            {"id": a, "object": "model", "created": 0, "owned_by": "m3e", "dimensions": m.embedder.dim,
             "max_tokens": m.embedder.max_length, "default_prompt": m.prompt_name} for a, m in served.items()]}

    @app.get("/health")
    async def health():
        try:
            ready()
        except APIError as exc:
            return exc.response()
        return {"status": "ok", "models": list(served)}

    @app.get("/metrics")
    async def prometheus(request: Request):
        authorize(request)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        for m in served.values():
            metrics.queue_depth.labels(m.alias).set(m.batcher.depth())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/embed")
    async def tei_embed(request: Request):
        """text-embeddings-inference style: ``{"inputs": str | [str], "prompt_name"?}`` -> ``[[float]]``."""
        authorize(request)
        ready()
        body = await read_json(request)
        if not isinstance(body, dict) or "inputs" not in body:
            raise APIError(400, "missing required field 'inputs'", param="inputs", code="missing_required_parameter")
        texts = parse_inputs(body["inputs"], config.max_inputs, config.cl100k_file)
        model = pick(body.get("model"))
        try:
            vectors, _, _ = await embed(model, texts, body.get("prompt_name") or model.prompt_name, request)
        except ClientGone:
            return Response(status_code=499)
        return JSONResponse(np.asarray(vectors, dtype=np.float32).tolist())

    @app.post("/similarity")
    async def tei_similarity(request: Request):
        """``{"inputs": {"source_sentence": str, "sentences": [str]}}`` -> cosine of each sentence to the source."""
        authorize(request)
        ready()
        body = await read_json(request)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, dict) or not isinstance(inputs.get("source_sentence"), str):
            raise APIError(400, "expected {'inputs': {'source_sentence': str, 'sentences': [str]}}", param="inputs")
        texts = parse_inputs([inputs["source_sentence"], *(inputs.get("sentences") or [])], config.max_inputs,
                             config.cl100k_file)
        if len(texts) < 2:
            raise APIError(400, "'sentences' must list at least one sentence", param="inputs.sentences")
        model = pick(body.get("model"))
        try:
            vectors, _, _ = await embed(model, texts, model.prompt_name, request)
        except ClientGone:
            return Response(status_code=499)
        return JSONResponse([float(x) for x in vectors[1:] @ vectors[0]])

    return app


__all__ = ["ServeConfig", "create_app", "split_spec", "M3EError"]
