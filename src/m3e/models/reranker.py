"""Rerankers: cross-encoders that read a query and a document together and give the pair one relevance score.

Around the model we do what the embedder does: length-sorted token-budget batches, a report of what was cut,
threads and an ONNX Runtime backend. Long documents are never cut silently: by default a document over the
model's length is split into overlapping windows and scored by its best window (``last_stats`` says which
documents and which window won). That part is :class:`PairScorer` (numpy only); the forward pass is a
sentence-transformers ``CrossEncoder``'s own (:class:`Reranker`, so scores equal ``CrossEncoder.predict``) or an
ONNX Runtime session (:class:`m3e.models.onnx_runtime.OnnxReranker`, no torch).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from m3e.errors import InputError, InputTooLong
from m3e.models.encoding import TRUNCATE_MODES, hf_tokenize, plan_batches, validate_texts

WINDOW_OVERLAP = 0.25  # of a window: an answer on a window's edge is read whole by the next one
QUERY_SHARE = 0.5  # a query longer than this share of the room is cut (counted), so documents keep room


@dataclass
class PairUnit:
    """One model input: a query and one document window, special tokens included."""

    ids: np.ndarray  # int32
    types: np.ndarray | None  # token type (segment) ids where the model takes them

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class RerankStats:
    """What the last ``score`` call did. ``windowed``: document -> windows read; ``best_window``: document ->
    the window whose score it got; ``truncated``: documents cut (truncate mode)."""

    documents: int = 0
    pairs: int = 0
    tokens: int = 0
    batches: int = 0
    query_truncated: bool = False
    truncated: list[int] = field(default_factory=list)
    windowed: dict[int, int] = field(default_factory=dict)
    best_window: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class PreparedPairs:
    """A query and its documents after tokenization and the length policy (the model-free half of ``score``)."""

    n: int
    stats: RerankStats
    units: list[PairUnit] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)
    window: list[int] = field(default_factory=list)  # the window number of each unit within its document
    tokens: list[int] = field(default_factory=list)  # per document: tokens it feeds the model


def pair_template(tokenizer) -> dict:
    """Where a pair's two texts sit in the tokenizer's template: the special ids before, between and after them,
    and the segment id of each part (BERT: 0 for the query, 1 for the document)."""
    a, b = "m3e probe 你好", "second 文档"
    ids_a = list(tokenizer(a, add_special_tokens=False)["input_ids"])
    ids_b = list(tokenizer(b, add_special_tokens=False)["input_ids"])
    enc = tokenizer(a, b, add_special_tokens=True, return_token_type_ids=True)
    full = list(enc["input_ids"])
    types = list(enc.get("token_type_ids") or [0] * len(full))
    for i in range(len(full) - len(ids_a) + 1):
        if full[i:i + len(ids_a)] != ids_a:
            continue
        for j in range(i + len(ids_a), len(full) - len(ids_b) + 1):
            if full[j:j + len(ids_b)] == ids_b:
                k = j + len(ids_b)
                return {"pre": full[:i], "mid": full[i + len(ids_a):j], "suf": full[k:],
                        "types": (types[:i], types[i], types[i + len(ids_a):j], types[j], types[k:])}
    raise RuntimeError("cannot locate a text pair inside the tokenizer's special-token template")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


class PairScorer:
    """Scoring shared by every reranker: ``score(query, docs)`` -> relevance in [0, 1] (or raw logits), ``rank`` ->
    sorted. A subclass sets ``name``, ``provenance``, ``device``, ``backend`` and the pair template (``_pre``,
    ``_mid``, ``_suf``, ``_types``, ``_pad_id``, ``_wants_token_types``), and gives ``max_length``, ``tokenize``
    and ``_forward`` (padded pairs -> logits)."""

    kind = "reranker"

    def _set_template(self, template: dict, pad_id: int, wants_token_types: bool) -> None:
        self._pre, self._mid, self._suf = list(template["pre"]), list(template["mid"]), list(template["suf"])
        self._types = tuple(template["types"])
        self._extra = len(self._pre) + len(self._mid) + len(self._suf)
        self._pad_id = pad_id
        self._wants_token_types = wants_token_types
        self.last_stats = RerankStats()

    @property
    def label(self) -> str:
        return self.name if self.backend == "torch" else f"{self.name}@{self.backend}"

    # ---- the length policy ------------------------------------------------------------------------------------
    def prepare(self, query: str, documents: Sequence[str], *, truncate: str = "window",
                max_length: int | None = None, max_windows: int | None = None) -> PreparedPairs:
        """Tokenize a query and its documents into pair units. ``truncate``: "window" (default) scores a long
        document by its best window (at most ``max_windows`` of them, from its start: a document cut there is
        counted in ``stats.truncated``), "truncate" cuts it at the model's length (counted too), "error" refuses
        it."""
        if not isinstance(query, str) or not query.strip():
            raise InputError("the query must be a non-empty string")
        docs = validate_texts(documents)
        if truncate not in TRUNCATE_MODES:
            raise InputError(f"truncate must be one of {', '.join(TRUNCATE_MODES)}, got '{truncate}'")
        limit = min(max_length or self.max_length, self.max_length)
        room = limit - self._extra
        if room < 4:
            raise InputError(f"max_length {limit} leaves no room for a query and a document")
        stats = RerankStats(documents=len(docs))
        prepared = PreparedPairs(n=len(docs), stats=stats)
        if not docs:
            return prepared
        ids = self.tokenize([query, *docs])
        q = ids[0]
        if len(q) > int(room * QUERY_SHARE):
            if truncate == "error":
                raise InputTooLong(f"the query has {len(q) + self._extra} tokens; at most {int(room * QUERY_SHARE)} "
                                   f"fit beside a document in {limit}")
            q = q[:int(room * QUERY_SHARE)]
            stats.query_truncated = True
        doc_room = room - len(q)
        step = max(1, int(doc_room * (1 - WINDOW_OVERLAP)))
        for i, d in enumerate(ids[1:]):
            pieces = [d]
            if len(d) > doc_room:
                if truncate == "error":
                    raise InputTooLong(f"document {i} has {len(d) + len(q) + self._extra} tokens with the query, more "
                                       f"than the model's limit of {limit}")
                if truncate == "truncate":
                    stats.truncated.append(i)
                    pieces = [d[:doc_room]]
                else:
                    starts = list(range(0, len(d) - doc_room, step)) + [len(d) - doc_room]
                    pieces = [d[s:s + doc_room] for s in starts]
                    if max_windows is not None and len(pieces) > max_windows:
                        pieces = pieces[:max(1, max_windows)]
                        stats.truncated.append(i)
                    if len(pieces) > 1:
                        stats.windowed[i] = len(pieces)
            for w, piece in enumerate(pieces):
                prepared.units.append(self._unit(q, piece))
                prepared.owner.append(i)
                prepared.window.append(w)
            prepared.tokens.append(sum(len(q) + len(p) + self._extra for p in pieces))
        stats.pairs = len(prepared.units)
        return prepared

    def _unit(self, q: list[int], d: list[int]) -> PairUnit:
        ids = np.asarray([*self._pre, *q, *self._mid, *d, *self._suf], dtype=np.int32)
        if not self._wants_token_types:
            return PairUnit(ids, None)
        pre, ta, mid, tb, suf = self._types
        types = np.asarray([*pre, *[ta] * len(q), *mid, *[tb] * len(d), *suf], dtype=np.int8)
        return PairUnit(ids, types)

    def combine(self, prepared: PreparedPairs, logits: np.ndarray, raw: bool = False) -> np.ndarray:
        """Unit logits -> one score per document (its best window); sigmoid unless ``raw``."""
        values = np.asarray(logits, dtype=np.float32).reshape(-1)
        best = np.full(prepared.n, -np.inf, dtype=np.float32)
        for k, (i, w) in enumerate(zip(prepared.owner, prepared.window, strict=True)):
            if values[k] > best[i]:
                best[i] = values[k]
                if i in prepared.stats.windowed:
                    prepared.stats.best_window[i] = w
        return best if raw else self.activate(best)

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """Relevance in [0, 1]: the sigmoid of the logit (what ``CrossEncoder.predict`` gives for one-label
        models, and what rerank APIs promise)."""
        return _sigmoid(np.asarray(logits, dtype=np.float32))

    # ---- the model --------------------------------------------------------------------------------------------
    def embed_units(self, units: list[PairUnit], batch_size: int = 32, max_batch_tokens: int = 16384,
                    show_progress: bool | None = False, stats: RerankStats | None = None) -> np.ndarray:
        """Logits of pair units, float32 of shape (n, 1), in length-sorted token-budget batches. (The name is the
        batcher's interface, shared with the embedder.)"""
        batches = plan_batches([len(u) for u in units], 0, batch_size, max_batch_tokens)
        if stats is not None:
            stats.batches += len(batches)
        out = np.empty((len(units), 1), dtype=np.float32)
        progress = None
        if show_progress or (show_progress is None and len(units) >= 2000):
            from tqdm.auto import tqdm

            progress = tqdm(total=len(units), desc=f"rerank {self.name}", unit="pair", leave=False, disable=None)
        for batch in batches:
            features = self.features([units[k] for k in batch])
            if stats is not None:
                stats.tokens += int(features["attention_mask"].sum())
            out[batch] = np.asarray(self._forward(features), dtype=np.float32).reshape(-1, 1)
            if progress is not None:
                progress.update(len(batch))
        if progress is not None:
            progress.close()
        return out

    def features(self, batch: Sequence[PairUnit]) -> dict[str, np.ndarray]:
        """Padded int64 model inputs of pair units."""
        width = max(len(u) for u in batch)
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64) if self._wants_token_types else None
        for r, u in enumerate(batch):
            input_ids[r, :len(u)] = u.ids
            mask[r, :len(u)] = 1
            if types is not None:
                types[r, :len(u)] = u.types
        features = {"input_ids": input_ids, "attention_mask": mask}
        if types is not None:
            features["token_type_ids"] = types
        return features

    def _forward(self, features: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover - abstract
        """Padded pairs -> one logit each."""
        raise NotImplementedError

    # ---- the public calls -------------------------------------------------------------------------------------
    def score(self, query: str, documents: Sequence[str], *, batch_size: int = 32, max_batch_tokens: int = 16384,
              truncate: str = "window", raw: bool = False, max_length: int | None = None,
              show_progress: bool | None = False) -> np.ndarray:
        """One score per document, in input order: relevance in [0, 1], or the model's logits with ``raw``."""
        if batch_size < 1 or max_batch_tokens < 1:
            raise InputError("batch_size and max_batch_tokens must be positive")
        start = time.perf_counter()
        prepared = self.prepare(query, documents, truncate=truncate, max_length=max_length)
        if not prepared.units:
            self.last_stats = prepared.stats
            return np.zeros(0, dtype=np.float32)
        logits = self.embed_units(prepared.units, batch_size, max_batch_tokens, show_progress, prepared.stats)
        scores = self.combine(prepared, logits, raw=raw)
        prepared.stats.seconds = time.perf_counter() - start
        self.last_stats = prepared.stats
        return scores

    def score_groups(self, groups: Sequence[tuple[str, Sequence[str]]], *, batch_size: int = 32,
                     max_batch_tokens: int = 16384, truncate: str = "window", raw: bool = False,
                     show_progress: bool | None = False) -> list[np.ndarray]:
        """Scores of several queries' documents at once: every pair goes into the same length-sorted token-budget
        batches (a query with 10 candidates no longer makes a batch of 10), then each query gets its own scores."""
        prepared = [self.prepare(q, docs, truncate=truncate) for q, docs in groups]
        units = [u for p in prepared for u in p.units]
        stats = RerankStats(documents=sum(p.n for p in prepared), pairs=len(units))
        logits = self.embed_units(units, batch_size, max_batch_tokens, show_progress, stats) if units else None
        out, offset = [], 0
        for p in prepared:
            out.append(self.combine(p, logits[offset:offset + len(p.units)], raw=raw) if p.units
                       else np.zeros(0, dtype=np.float32))
            offset += len(p.units)
        self.last_stats = stats
        return out

    def score_pairs(self, pairs: Sequence[tuple[str, str]], **kwargs) -> np.ndarray:
        """Scores of independent (query, document) pairs, grouped by query so each query is tokenized once."""
        groups: dict[str, list[int]] = {}
        for k, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InputError(f"pair {k} must be (query, document), got {type(pair).__name__}")
            groups.setdefault(pair[0], []).append(k)
        out = np.zeros(len(pairs), dtype=np.float32)
        scores = self.score_groups([(q, [pairs[k][1] for k in idx]) for q, idx in groups.items()], **kwargs)
        for idx, values in zip(groups.values(), scores, strict=True):
            out[idx] = values
        return out

    def rank(self, query: str, documents: Sequence[str], top_k: int | None = None, *,
             return_documents: bool = False, **kwargs) -> list[dict]:
        """Documents sorted by score, high to low (ties: input order): ``[{corpus_id, score, text?}]``."""
        scores = self.score(query, documents, **kwargs)
        order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
        if top_k is not None:
            order = order[:max(0, int(top_k))]
        docs = list(documents)
        return [{"corpus_id": i, "score": float(scores[i]), **({"text": docs[i]} if return_documents else {})}
                for i in order]


class Reranker(PairScorer):
    """A loaded sentence-transformers ``CrossEncoder`` with one label, scored by its own forward pass (torch)."""

    def __init__(self, model, *, name: str = "reranker", provenance: str = "", max_length: int | None = None) -> None:
        num_labels = int(getattr(model, "num_labels", 1) or 1)
        if num_labels != 1:
            raise InputError(f"{name} is a cross-encoder with {num_labels} labels (a pair classifier such as NLI), "
                             "not a reranker: a reranker gives one relevance score per pair")
        self.model = model
        self.name = name
        self.provenance = provenance
        self.tokenizer = model.tokenizer
        self.hf = model[0].model  # the transformers ...ForSequenceClassification
        self.device = str(model.device)
        self.backend = "torch"
        self._limit = max_length  # the caller's, else the model's own
        pad = self.tokenizer.pad_token_id
        self._set_template(pair_template(self.tokenizer), pad if pad is not None else 0,
                           "token_type_ids" in getattr(self.tokenizer, "model_input_names", []))

    @property
    def max_length(self) -> int:
        return int(min(self._limit or self.model.max_length or 512, 512))

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return hf_tokenize(self.tokenizer, texts)

    def _forward(self, features: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        tensors = {k: torch.from_numpy(v).to(self.device) for k, v in features.items()}
        with torch.inference_mode():
            return self.hf(**tensors).logits.float().reshape(-1, 1).cpu().numpy()

    def save(self, path) -> None:
        from m3e.utils.atomic import atomic_dir

        with atomic_dir(path) as tmp:
            self.model.save(str(tmp))
