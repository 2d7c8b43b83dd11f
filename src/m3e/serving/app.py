"""The FastAPI app: the service, its routes, OpenAI-shaped errors for everything and request counting.

Models load in a background thread after start-up, so ``/health`` says 503 until they are loaded and warmed up
(and again while shutting down, or while an inference worker is being restarted).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from m3e.errors import M3EError
from m3e.serving.errors import APIError, error_response
from m3e.serving.metrics import ServerMetrics
from m3e.serving.routes import router
from m3e.serving.service import EmbeddingService, ServeConfig, split_spec

log = logging.getLogger("m3e.serve")
KNOWN_ROUTES = {"/v1/embeddings", "/embeddings", "/v1/models", "/health", "/metrics", "/embed", "/similarity",
                "/v1/rerank", "/v2/rerank", "/rerank"}


class CountRequests:
    """Requests by route and status. Plain ASGI: Starlette's BaseHTTPMiddleware would hide client disconnects
    from the handlers, and the batcher relies on seeing them."""

    def __init__(self, app, metrics: ServerMetrics, counts: dict) -> None:
        self.app, self.metrics = app, metrics
        self.counts = counts  # started / answered / by_status: the shutdown report

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}
        self.counts["started"] += 1

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.counts["answered"] += 1

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope["path"] if scope["path"] in KNOWN_ROUTES else "other"
            self.metrics.requests.labels(route, str(status["code"])).inc()
            by_status = self.counts["by_status"]
            by_status[str(status["code"])] = by_status.get(str(status["code"]), 0) + 1


def create_app(config: ServeConfig, load=None, load_reranker=None) -> FastAPI:
    """``load(target) -> Embedder`` defaults to :func:`m3e.models.resolver.load_model` with the config's options
    (``load_reranker`` likewise). The models load when the app starts (lifespan); tests may call
    ``app.state.service.load_all()`` instead."""
    service = EmbeddingService(config, load, load_reranker)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        yield
        await run_in_threadpool(service.stop)

    app = FastAPI(title="m3e embeddings and rerank", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.include_router(router)
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(CountRequests, metrics=service.metrics, counts=service.request_counts)
    return app


async def _api_error(request: Request, exc: APIError):
    return exc.response()


async def _http_error(request: Request, exc: StarletteHTTPException):
    if exc.status_code == 404:
        return error_response(404, f"no route {request.method} {request.url.path}", code="unknown_url")
    if exc.status_code == 405:
        return error_response(405, f"method {request.method} not allowed on {request.url.path}",
                              code="method_not_allowed")
    return error_response(exc.status_code, str(exc.detail))


async def _validation(request: Request, exc: RequestValidationError):
    return error_response(400, f"invalid request: {exc.errors()}", code="invalid_request")


async def _unexpected(request: Request, exc: Exception):
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}", code="internal_error")


__all__ = ["ServeConfig", "create_app", "split_spec", "M3EError"]
