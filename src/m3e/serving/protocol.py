"""The OpenAI embeddings contract: request validation with messages that name the field and item, and
responses in float or base64 (float32 little-endian), as the official clients expect them."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from m3e.serving.errors import APIError
from m3e.serving.tokens import NO_TABLE, cl100k

INPUT_TYPES = {"query": "query", "search_query": "query", "passage": "passage", "document": "passage",
               "search_document": "passage"}


@dataclass
class EmbeddingRequest:
    texts: list[str]
    model: str | None
    encoding_format: str
    dimensions: int | None
    input_type: str | None  # extension (Cohere/NIM style): query or passage


def bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def _decode_tokens(ids_lists: list[list[int]], table: str | None) -> list[str]:
    enc = cl100k(table)
    if enc is None:
        raise bad(NO_TABLE, "input", "token_input_unsupported")
    texts = []
    for i, ids in enumerate(ids_lists):
        try:
            texts.append(enc.decode(ids))
        except Exception:  # noqa: BLE001 - ids outside the table
            raise bad(f"input[{i}] has token ids that are not in the cl100k table", "input") from None
    return texts


def parse_inputs(value: object, max_inputs: int, table: str | None) -> list[str]:
    if isinstance(value, str):
        items: list = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise bad("'input' must be a string, a list of strings, a list of token ids or a list of token-id lists",
                  "input", "invalid_type")
    if not items:
        raise bad("'input' is an empty list; send at least one text", "input")
    if len(items) > max_inputs:
        raise APIError(413, f"'input' has {len(items)} items; this server takes at most {max_inputs} per request",
                       param="input", code="too_many_inputs")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in items):
        return _decode_tokens([items], table)
    if all(isinstance(x, list) for x in items):
        for i, ids in enumerate(items):
            if not ids or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids):
                raise bad(f"input[{i}] must be a non-empty list of non-negative token ids", "input", "invalid_type")
        return _decode_tokens(items, table)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise bad(f"input[{i}] is {type(text).__name__}; expected a string (or send only token-id lists)",
                      "input", "invalid_type")
        if not text.strip():
            raise bad(f"input[{i}] is an empty string; empty texts have no embedding", "input")
    return items


def parse_request(body: object, max_inputs: int, table: str | None) -> EmbeddingRequest:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object", None, "invalid_type")
    if "input" not in body:
        raise bad("missing required field 'input'", "input", "missing_required_parameter")
    texts = parse_inputs(body["input"], max_inputs, table)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad("'model' must be a string", "model", "invalid_type")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad(f"'encoding_format' must be 'float' or 'base64', not {fmt!r}", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise bad(f"'dimensions' must be a positive integer, not {dims!r}", "dimensions")
    kind = body.get("input_type")
    if kind is not None and kind not in INPUT_TYPES:
        raise bad(f"'input_type' must be one of {', '.join(INPUT_TYPES)}, not {kind!r}", "input_type")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad("'user' must be a string", "user", "invalid_type")
    return EmbeddingRequest(texts, model, fmt, dims, INPUT_TYPES.get(kind) if kind else None)


def shape_vectors(vectors: np.ndarray, dimensions: int | None, model_dim: int) -> np.ndarray:
    """Matryoshka-style ``dimensions``: keep the first d values and re-normalize."""
    if dimensions is None:
        return vectors
    if dimensions > model_dim:
        raise bad(f"'dimensions' is {dimensions}, but this model's vectors have {model_dim}", "dimensions")
    cut = vectors[:, :dimensions]
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def response_body(vectors: np.ndarray, model: str, fmt: str, tokens: int) -> dict:
    data = []
    for i, v in enumerate(np.asarray(vectors, dtype="<f4")):
        emb = base64.b64encode(v.tobytes()).decode("ascii") if fmt == "base64" else v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
