"""The OpenAI embeddings contract: JSON bodies parsed safely, request validation with messages that name the
field and item, and responses in float or base64 (float32 little-endian), as the official clients expect them.

Every malformed body is a 400 naming what is wrong: invalid or truncated JSON, nesting deeper than 1,024
levels, numbers out of range, unpaired UTF-16 surrogates (named by item), wrong types.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np
import orjson

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


def brief(value: object) -> str:
    """A short description of a client's value for an error message (never a deep or huge repr)."""
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, str):
        return repr(value[:40] + ("…" if len(value) > 40 else ""))
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def parse_json(body: bytes) -> object:
    """The request body as JSON, or a 400 that says why (orjson: fast, bounded depth, strict UTF-8)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
    if "surrogate" in message:
        where = _surrogate_item(body)
        if where:
            raise bad(f"{where} contains an unpaired UTF-16 surrogate escape; send valid Unicode text", "input")
    raise APIError(400, f"invalid JSON body: {message}", code="invalid_json")


def _surrogate_item(body: bytes) -> str | None:
    """Which field or input item holds the unpaired surrogate (the standard parser accepts them)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None

    def has(text: object) -> bool:
        return isinstance(text, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in text)

    if not isinstance(doc, dict):
        return None
    for key, value in doc.items():
        if has(key) or has(value):
            return f"field '{key[:40]}'" if not has(key) else "a field name"
        if isinstance(value, list):
            for i, item in enumerate(value):
                if has(item):
                    return f"{key}[{i}]"
        if isinstance(value, dict):
            for sub, item in value.items():
                if has(sub) or has(item) or (isinstance(item, list) and any(has(x) for x in item)):
                    return f"{key}.{sub[:40]}"
    return "the body"


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


def _is_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**32


def parse_inputs(value: object, max_inputs: int, table: str | None, param: str = "input") -> list[str]:
    """``input`` as OpenAI accepts it: a string, strings, token ids or token-id lists (at most ``max_inputs``)."""
    if isinstance(value, str):
        items: list = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise bad(f"'{param}' must be a string, a list of strings, a list of token ids or a list of token-id lists, "
                  f"not {brief(value)}", param, "invalid_type")
    if not items:
        raise bad(f"'{param}' is an empty list; send at least one text", param)
    if len(items) > max_inputs:
        raise bad(f"'{param}' has {len(items)} items; this server takes at most {max_inputs} per request", param,
                  "too_many_inputs")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in items):
        if not all(_is_id(x) for x in items):
            raise bad(f"'{param}' token ids must be integers from 0 to 2^32-1", param, "invalid_type")
        return _decode_tokens([items], table)
    if all(isinstance(x, list) for x in items):
        for i, ids in enumerate(items):
            if not ids or not all(_is_id(t) for t in ids):
                raise bad(f"{param}[{i}] must be a non-empty list of non-negative token ids", param, "invalid_type")
        return _decode_tokens(items, table)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise bad(f"{param}[{i}] is {type(text).__name__}; expected a string (or send only token-id lists)",
                      param, "invalid_type")
        if not text.strip():
            raise bad(f"{param}[{i}] is an empty string; empty texts have no embedding", param)
    return items


def optional_str(body: dict, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad(f"'{key}' must be a string, not {brief(value)}", key, "invalid_type")
    return value


def parse_request(body: object, max_inputs: int, table: str | None) -> EmbeddingRequest:
    if not isinstance(body, dict):
        raise bad(f"the request body must be a JSON object, not {brief(body)}", None, "invalid_type")
    if "input" not in body:
        raise bad("missing required field 'input'", "input", "missing_required_parameter")
    texts = parse_inputs(body["input"], max_inputs, table)
    model = optional_str(body, "model")
    fmt = body.get("encoding_format") or "float"
    if not isinstance(fmt, str) or fmt not in ("float", "base64"):
        raise bad(f"'encoding_format' must be 'float' or 'base64', not {brief(fmt)}", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise bad(f"'dimensions' must be a positive integer, not {brief(dims)}", "dimensions")
    kind = body.get("input_type")
    if kind is not None and (not isinstance(kind, str) or kind not in INPUT_TYPES):
        raise bad(f"'input_type' must be one of {', '.join(INPUT_TYPES)}, not {brief(kind)}", "input_type")
    optional_str(body, "user")
    return EmbeddingRequest(texts, model, fmt, dims, INPUT_TYPES.get(kind) if kind else None)


def shape_vectors(vectors: np.ndarray, dimensions: int | None, model_dim: int) -> np.ndarray:
    """Matryoshka-style ``dimensions``: keep the first d values and re-normalize."""
    if dimensions is None:
        return vectors
    if dimensions > model_dim:
        raise bad(f"'dimensions' is {dimensions}, but this model's vectors have {model_dim}", "dimensions")
    cut = vectors[:, :dimensions]
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def response_json(vectors: np.ndarray, model: str, fmt: str, tokens: int) -> bytes:
    """The response body, serialized: float32 values written by orjson (shortest round-trip form), or base64."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    if fmt == "base64":
        data = [{"object": "embedding", "index": i, "embedding": base64.b64encode(v.tobytes()).decode("ascii")}
                for i, v in enumerate(vectors)]
    else:
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    body = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
