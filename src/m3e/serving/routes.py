"""The HTTP routes: each reads the shared :class:`~m3e.serving.service.EmbeddingService` from the app."""

from __future__ import annotations

import time

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from m3e.serving.errors import APIError
from m3e.serving.protocol import bad, parse_inputs, parse_json, parse_request, response_json, shape_vectors
from m3e.serving.service import EmbeddingService

router = APIRouter()
CLIENT_CLOSED = 499  # nginx's code for a client that left before its answer


def service_of(request: Request) -> EmbeddingService:
    return request.app.state.service


def _json(content: bytes, headers: dict | None = None) -> Response:
    return Response(content, media_type="application/json", headers=headers)


@router.post("/v1/embeddings")
@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    """The OpenAI contract: float or base64 vectors, ``dimensions``, ``input_type`` (query/passage) extension."""
    service = service_of(request)
    start = time.perf_counter()
    service.authorize(request)
    service.check_ready()
    async with service.admitted(request) as ticket:
        req = parse_request(parse_json(await service.read_body(request)), service.config.max_inputs,
                            service.config.cl100k_file)
        model = service.pick(req.model)
        prompt = service.prompt(model, req.input_type or model.prompt_name, "input_type", optional=bool(req.input_type))
        out = await service.embed(model, req.texts, prompt, request, ticket)
        if out is None:
            return Response(status_code=CLIENT_CLOSED)
        vectors = shape_vectors(out.vectors, req.dimensions, model.embedder.dim)
        content = await service.serialize(response_json, vectors, model.alias, req.encoding_format, out.tokens)
    service.metrics.latency.labels(model.alias).observe(time.perf_counter() - start)
    return _json(content, {"X-Truncated-Inputs": str(out.truncated)} if out.truncated else None)


@router.get("/v1/models")
async def models(request: Request) -> Response:
    service = service_of(request)
    service.authorize(request)
    return JSONResponse({"object": "list", "data": [
        {"id": a, "object": "model", "created": 0, "owned_by": "m3e", "dimensions": m.embedder.dim,
         "max_tokens": m.embedder.max_length, "default_prompt": m.prompt_name} for a, m in service.models.items()]})


@router.get("/health")
async def health(request: Request) -> Response:
    """200 when every model is loaded and its inference worker runs; 503 (with the reason) otherwise."""
    service = service_of(request)
    try:
        service.check_ready()
    except APIError as exc:
        return exc.response()
    return JSONResponse({"status": "ok", "models": list(service.models)})


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    service = service_of(request)
    service.authorize(request)
    for m in service.models.values():
        service.metrics.queue_depth.labels(m.alias).set(m.batcher.depth())
        service.metrics.worker_alive.labels(m.alias).set(int(m.batcher.alive()))
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _object(body: object, what: str) -> dict:
    if not isinstance(body, dict):
        raise bad(f"the request body must be a JSON object ({what})", None, "invalid_type")
    return body


def _model_field(body: dict) -> str | None:
    name = body.get("model")
    if name is not None and not isinstance(name, str):
        raise bad("'model' must be a string", "model", "invalid_type")
    return name


@router.post("/embed")
async def tei_embed(request: Request) -> Response:
    """text-embeddings-inference style: ``{"inputs": str | [str], "prompt_name"?, "model"?}`` -> ``[[float]]``."""
    service = service_of(request)
    service.authorize(request)
    service.check_ready()
    async with service.admitted(request) as ticket:
        body = _object(parse_json(await service.read_body(request)), "{'inputs': str | [str]}")
        if "inputs" not in body:
            raise bad("missing required field 'inputs'", "inputs", "missing_required_parameter")
        texts = parse_inputs(body["inputs"], service.config.max_inputs, service.config.cl100k_file, "inputs")
        model = service.pick(_model_field(body))
        name = body.get("prompt_name")
        if name is not None and not isinstance(name, str):
            raise bad("'prompt_name' must be a string", "prompt_name", "invalid_type")
        prompt = service.prompt(model, name or model.prompt_name, "prompt_name")
        out = await service.embed(model, texts, prompt, request, ticket)
        if out is None:
            return Response(status_code=CLIENT_CLOSED)
        content = await service.serialize(lambda v: orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY),
                                          np.ascontiguousarray(out.vectors, dtype=np.float32))
    return _json(content)


@router.post("/similarity")
async def tei_similarity(request: Request) -> Response:
    """``{"inputs": {"source_sentence": str, "sentences": [str]}}`` -> cosine of each sentence to the source."""
    service = service_of(request)
    service.authorize(request)
    service.check_ready()
    async with service.admitted(request) as ticket:
        body = _object(parse_json(await service.read_body(request)),
                       "{'inputs': {'source_sentence': str, 'sentences': [str]}}")
        inputs = body.get("inputs")
        if not isinstance(inputs, dict) or not isinstance(inputs.get("source_sentence"), str):
            raise bad("expected {'inputs': {'source_sentence': str, 'sentences': [str]}}", "inputs")
        sentences = inputs.get("sentences")
        if not isinstance(sentences, list):
            raise bad("'inputs.sentences' must be a list of strings", "inputs.sentences", "invalid_type")
        source = parse_inputs(inputs["source_sentence"], 1, None, "inputs.source_sentence")
        others = parse_inputs(sentences, service.config.max_inputs - 1, None, "inputs.sentences")
        model = service.pick(_model_field(body))
        out = await service.embed(model, source + others, service.prompt(model, model.prompt_name, "prompt_name"),
                                  request, ticket)
        if out is None:
            return Response(status_code=CLIENT_CLOSED)
    return _json(orjson.dumps([float(x) for x in out.vectors[1:] @ out.vectors[0]]))
