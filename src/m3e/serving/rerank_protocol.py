"""The rerank contracts: Jina/Cohere (``POST /v1/rerank``: FastGPT, Dify, new-api, Xinference, LangChain, LlamaIndex)
and text-embeddings-inference (``POST /rerank`` with ``texts``). Requests are validated with messages that name the
field and the item; responses are sorted by score, high to low (ties: input order)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import orjson

from m3e.serving.protocol import bad, brief, optional_str


@dataclass
class RerankRequest:
    query: str
    documents: list[str]
    model: str | None
    top_n: int  # clamped to the number of documents
    return_documents: bool
    raw_scores: bool  # TEI: logits instead of [0, 1]
    truncate: str  # "window" (default) or "truncate"
    max_chunks_per_doc: int | None
    tei: bool  # answer in TEI's shape


def _text(value: object, param: str) -> str:
    """A string, or a ``{"text": str}`` object (Jina/Cohere accept both)."""
    if isinstance(value, dict):
        if "text" not in value:
            raise bad(f"'{param}' is an object without a 'text' field; send a string or {{\"text\": str}}", param,
                      "invalid_type")
        value = value["text"]
    if not isinstance(value, str):
        raise bad(f"'{param}' must be a string or {{\"text\": str}}, not {brief(value)}", param, "invalid_type")
    if not value.strip():
        raise bad(f"'{param}' is an empty string", param)
    return value


def _flag(body: dict, key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"'{key}' must be true or false, not {brief(value)}", key, "invalid_type")
    return value


def _positive(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad(f"'{key}' must be a positive integer, not {brief(value)}", key)
    return value


def parse_rerank(body: object, max_documents: int, *, tei_route: bool = False) -> RerankRequest:
    """Either shape: ``documents`` (Jina/Cohere) or ``texts`` (TEI; only on ``/rerank``)."""
    if not isinstance(body, dict):
        raise bad(f"the request body must be a JSON object, not {brief(body)}", None, "invalid_type")
    tei = tei_route and "texts" in body and "documents" not in body
    field = "texts" if tei else "documents"
    if "query" not in body:
        raise bad("missing required field 'query'", "query", "missing_required_parameter")
    query = _text(body["query"], "query")
    if field not in body:
        hint = " (or 'texts', text-embeddings-inference's name)" if tei_route else ""
        raise bad(f"missing required field '{field}'{hint}", field, "missing_required_parameter")
    items = body[field]
    if not isinstance(items, list):
        raise bad(f"'{field}' must be a list of strings or {{\"text\": str}} objects, not {brief(items)}", field,
                  "invalid_type")
    if not items:
        raise bad(f"'{field}' is an empty list; send at least one document", field)
    if len(items) > max_documents:
        raise bad(f"'{field}' has {len(items)} documents; this server reranks at most {max_documents} per request",
                  field, "too_many_documents")
    documents = [_text(item, f"{field}[{i}]") for i, item in enumerate(items)]
    top_n = _positive(body, "top_n")
    if tei:
        truncate = "truncate" if _flag(body, "truncate", False) else "window"
        return RerankRequest(query, documents, optional_str(body, "model"), len(documents),
                             _flag(body, "return_text", False), _flag(body, "raw_scores", False), truncate, None, True)
    return RerankRequest(query, documents, optional_str(body, "model"),
                         min(top_n or len(documents), len(documents)), _flag(body, "return_documents", False), False,
                         "window", _positive(body, "max_chunks_per_doc"), False)


def order(scores: np.ndarray, top_n: int) -> list[int]:
    """Indices by score, high to low; equal scores keep input order (a stable answer for the same request)."""
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))[:top_n]


def _window(stats, i: int) -> dict:
    if i not in stats.windowed:
        return {}
    return {"windows": {"read": stats.windowed[i], "best": stats.best_window.get(i, 0)}}


def jina_body(req: RerankRequest, relevance: np.ndarray, model: str, tokens: int, stats) -> bytes:
    """``{id, model, results: [{index, relevance_score, document?: {text}}], usage}``; a document read in windows
    says so (``windows: {read, best}``)."""
    results = []
    for i in order(relevance, req.top_n):
        item = {"index": i, "relevance_score": float(relevance[i])}
        if req.return_documents:
            item["document"] = {"text": req.documents[i]}
        item.update(_window(stats, i))
        results.append(item)
    return orjson.dumps({"id": str(uuid.uuid4()), "model": model, "results": results,
                        "usage": {"total_tokens": tokens, "prompt_tokens": tokens}})


def tei_body(req: RerankRequest, raw: np.ndarray, relevance: np.ndarray) -> bytes:
    """TEI's ``[{index, score, text?}]``, sorted by score; ``raw_scores`` gives the logits."""
    scores = raw if req.raw_scores else relevance
    out = []
    for i in order(scores, len(scores)):
        item = {"index": i, "score": float(scores[i])}
        if req.return_documents:
            item["text"] = req.documents[i]
        out.append(item)
    return orjson.dumps(out)
