"""The HTTP routes: each reads the shared :class:`~m3e.serving.service.EmbeddingService` from the app."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from m3e.serving.errors import APIError
from m3e.serving.protocol import (
    bad,
    optional_str,
    parse_inputs,
    parse_json,
    parse_request,
    response_json,
    shape_vectors,
)
from m3e.serving.rerank_protocol import jina_body, parse_rerank, tei_body
from m3e.serving.service import EmbeddingService

router = APIRouter()
CLIENT_CLOSED = 499  # nginx's code for a client that left before its answer


def service_of(request: Request) -> EmbeddingService:
    return request.app.state.service


def _json(content: bytes, headers: dict | None = None) -> Response:
    return Response(content, media_type="application/json", headers=headers)


@asynccontextmanager
async def json_request(request: Request, shape: str | None = None):
    """What every POST route does first: authorize, check readiness, admit the body's tokens (429 before reading
    it when the budget is spent), then read and parse it; the reservation lasts until the response is ready."""
    service = service_of(request)
    service.authorize(request)
    service.check_ready()
    async with service.admitted(request) as ticket:
        body = parse_json(await service.read_body(request))
        if shape is not None and not isinstance(body, dict):
            raise bad(f"the request body must be a JSON object ({shape})", None, "invalid_type")
        yield service, ticket, body


@router.post("/v1/embeddings")
@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    """The OpenAI contract: float or base64 vectors, ``dimensions``, ``input_type`` (query/passage) extension."""
    start = time.perf_counter()
    async with json_request(request) as (service, ticket, body):
        req = parse_request(body, service.config.max_inputs, service.config.cl100k_file)
        model = service.pick(req.model)
        prompt = service.prompt(model, req.input_type or model.prompt_name, "input_type", optional=bool(req.input_type))
        out = await service.embed(model, req.texts, prompt, request, ticket)
        if out is None:
            return Response(status_code=CLIENT_CLOSED)
        vectors = shape_vectors(out.vectors, req.dimensions, model.embedder.dim)
        content = await service.serialize(response_json, vectors, model.alias, req.encoding_format, out.tokens)
    service.metrics.latency.labels(model.alias).observe(time.perf_counter() - start)
    return _json(content, {"X-Truncated-Inputs": str(out.truncated)} if out.truncated else None)


@router.post("/v1/rerank")
@router.post("/v2/rerank")
@router.post("/rerank")
async def rerank(request: Request) -> Response:
    """Jina/Cohere: ``{query, documents: [str | {text}], top_n?, return_documents?, max_chunks_per_doc?, model?}``
    -> ``{results: [{index, relevance_score, document?}], usage}``. On ``/rerank`` a body with ``texts`` gets
    text-embeddings-inference's contract (``raw_scores``, ``return_text``, ``truncate`` -> ``[{index, score}]``)."""
    start = time.perf_counter()
    tei_route = request.url.path == "/rerank"
    async with json_request(request, "{'query': str, 'documents': [str]}") as (service, ticket, body):
        req = parse_rerank(body, service.config.max_documents, tei_route=tei_route)
        model = service.pick_reranker(req.model)
        out = await service.rerank(model, req.query, req.documents, request, ticket, req.truncate,
                                   req.max_chunks_per_doc)
        if out is None:
            return Response(status_code=CLIENT_CLOSED)
        if req.tei:
            content = tei_body(req, out.scores, out.relevance)
        else:
            content = jina_body(req, out.relevance, model.alias, out.tokens, out.stats)
    service.metrics.latency.labels(model.alias).observe(time.perf_counter() - start)
    headers = {}
    if out.stats.truncated:
        headers["X-Truncated-Inputs"] = str(len(out.stats.truncated))
    if out.stats.windowed:
        headers["X-Windowed-Documents"] = str(len(out.stats.windowed))
    return _json(content, headers or None)


@router.get("/v1/models")
async def models(request: Request) -> Response:
    service = service_of(request)
    service.authorize(request)
    data = [{"id": a, "object": "model", "created": 0, "owned_by": "m3e", "type": "embedding",
             "dimensions": m.embedder.dim, "max_tokens": m.embedder.max_length, "default_prompt": m.prompt_name}
            for a, m in service.models.items()]
    data += [{"id": a, "object": "model", "created": 0, "owned_by": "m3e", "type": "reranker",
              "max_tokens": m.embedder.max_length} for a, m in service.rerankers.items()]
    return JSONResponse({"object": "list", "data": data})


@router.get("/health")
async def health(request: Request) -> Response:
    """200 when every model is loaded and its inference worker runs; 503 (with the reason) otherwise."""
    service = service_of(request)
    try:
        service.check_ready()
    except APIError as exc:
        return exc.response()
    return JSONResponse({"status": "ok", "models": list(service.models), "rerankers": list(service.rerankers)})


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    service = service_of(request)
    service.authorize(request)
    for m in service.served():
        service.metrics.queue_depth.labels(m.alias).set(m.batcher.depth())
        service.metrics.worker_alive.labels(m.alias).set(int(m.batcher.alive()))
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post("/embed")
async def tei_embed(request: Request) -> Response:
    """text-embeddings-inference style: ``{"inputs": str | [str], "prompt_name"?, "model"?}`` -> ``[[float]]``."""
    async with json_request(request, "{'inputs': str | [str]}") as (service, ticket, body):
        if "inputs" not in body:
            raise bad("missing required field 'inputs'", "inputs", "missing_required_parameter")
        texts = parse_inputs(body["inputs"], service.config.max_inputs, service.config.cl100k_file, "inputs")
        model = service.pick(optional_str(body, "model"))
        prompt = service.prompt(model, optional_str(body, "prompt_name") or model.prompt_name, "prompt_name")
        out = await service.embed(model, texts, prompt, request, ticket)
        if out is None:
            return Response(status_code=CLIENT_CLOSED)
        content = await service.serialize(lambda v: orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY),
                                          np.ascontiguousarray(out.vectors, dtype=np.float32))
    return _json(content)


@router.post("/similarity")
async def tei_similarity(request: Request) -> Response:
    """``{"inputs": {"source_sentence": str, "sentences": [str]}}`` -> cosine of each sentence to the source."""
    async with json_request(request, "{'inputs': {'source_sentence': str, 'sentences': [str]}}") as (
            service, ticket, body):
        inputs = body.get("inputs")
        if not isinstance(inputs, dict) or not isinstance(inputs.get("source_sentence"), str):
            raise bad("expected {'inputs': {'source_sentence': str, 'sentences': [str]}}", "inputs")
        sentences = inputs.get("sentences")
        if not isinstance(sentences, list):
            raise bad("'inputs.sentences' must be a list of strings", "inputs.sentences", "invalid_type")
        source = parse_inputs(inputs["source_sentence"], 1, None, "inputs.source_sentence")
        others = parse_inputs(sentences, service.config.max_inputs - 1, None, "inputs.sentences")
        model = service.pick(optional_str(body, "model"))
        out = await service.embed(model, source + others, service.prompt(model, model.prompt_name, "prompt_name"),
                                  request, ticket)
        if out is None:
            return Response(status_code=CLIENT_CLOSED)
    return _json(orjson.dumps([float(x) for x in out.vectors[1:] @ out.vectors[0]]))
