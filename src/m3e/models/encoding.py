"""The model-free half of every embedder: texts -> token units -> length-sorted token-budget batches -> pooled
vectors -> one normalized vector per text, in numpy.

Why not ``SentenceTransformer.encode``: we batch by a token budget after sorting by token length (less padding,
steady memory), count and report truncation instead of truncating silently, can average windows for long texts,
and validate input with messages that name the offending item. A backend only supplies the forward pass
(padded ids -> pooled vectors): torch (:mod:`m3e.models.encoder`) or ONNX Runtime
(:mod:`m3e.models.onnx_runtime`, which needs neither torch nor sentence-transformers), so both encode the same
way. Prompts are resolved here too: the one rule for prompt names and query/passage roles.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from m3e.errors import InputError, InputTooLong

TRUNCATE_MODES = ("truncate", "error", "window")


def cpu_threads(threads: int | None = None) -> int:
    """Threads to compute with: ``threads``, else ``$M3E_THREADS``, else the CPUs this process may use."""
    if threads is None and os.environ.get("M3E_THREADS"):
        threads = int(os.environ["M3E_THREADS"])
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            threads = os.cpu_count() or 1
    return max(1, int(threads))


def hf_tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    """Content token ids from a transformers tokenizer: no special tokens, no truncation, no padding."""
    enc = tokenizer(texts, add_special_tokens=False, truncation=False, padding=False, return_attention_mask=False,
                    verbose=False)
    return [list(ids) for ids in enc["input_ids"]]


@dataclass
class EncodeStats:
    """What the last ``encode`` call did; ``truncated`` lists input indices cut at max length."""

    texts: int = 0
    tokens: int = 0
    batches: int = 0
    windows: int = 0
    truncated: list[int] = field(default_factory=list)
    seconds: float = 0.0


def validate_texts(texts: object) -> list[str]:
    """A list of non-empty strings, or an :class:`InputError` naming the bad item."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) and not hasattr(texts, "__iter__"):
        raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    out = list(texts)
    for i, text in enumerate(out):
        if text is None:
            raise InputError(f"item {i} is None; expected a non-empty string")
        if not isinstance(text, str):
            raise InputError(f"item {i} is {type(text).__name__} ({text!r:.40}); expected a string")
        if not text.strip():
            raise InputError(f"item {i} is an empty string; empty texts have no embedding")
    return out


@dataclass
class Prepared:
    """Texts after tokenization and the length policy: units of content ids, the text each belongs to, and the
    tokens each text feeds the model (special tokens included, after truncation)."""

    n: int
    stats: EncodeStats
    units: list[list[int]] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)


class TextEncoder:
    """Encoding shared by every embedder. A subclass sets ``name``, ``provenance``, ``device``, ``backend``,
    ``_prefix``/``_suffix`` (special token ids around a text), ``_pad_id`` and ``_wants_token_types``, and gives
    ``dim``, ``max_length``, ``prompts``, ``default_prompt_name``, ``tokenize`` and ``_forward``."""

    name: str = "model"
    provenance: str = ""
    device: str = "cpu"
    backend: str = "torch"
    default_prompt_name: str | None = None
    last_stats: EncodeStats

    # ---- facts about the model -------------------------------------------------------------
    @property
    def label(self) -> str:
        return result_label(self)

    def resolve_prompt(self, prompt: str | None = None, prompt_name: str | None = None) -> str:
        """An explicit prompt wins; then a named prompt from the model's config; then its default."""
        if prompt is not None:
            return prompt
        return named_prompt(self, prompt_name or self.default_prompt_name)

    def count_tokens(self, texts: list[str], prompt: str = "") -> list[int]:
        """Tokens each text feeds the model (special tokens included, before truncation)."""
        extra = len(self._prefix) + len(self._suffix)
        return [len(ids) + extra for ids in self.tokenize([prompt + t for t in texts])]

    # ---- encoding --------------------------------------------------------------------------
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        prompt: str | None = None,
        prompt_name: str | None = None,
        batch_size: int = 64,
        max_batch_tokens: int = 16384,
        normalize: bool = True,
        truncate: str = "truncate",
        max_length: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed texts; float32 array of shape (n, dim), or (dim,) for a single string.

        ``truncate``: "truncate" cuts at the model's max length (see ``last_stats.truncated``),
        "error" refuses over-long texts, "window" averages embeddings of consecutive windows.
        """
        single = isinstance(texts, str)
        if batch_size < 1 or max_batch_tokens < 1:
            raise InputError("batch_size and max_batch_tokens must be positive")
        start = time.perf_counter()
        prepared = self.prepare(texts, prompt=prompt, prompt_name=prompt_name, truncate=truncate,
                                max_length=max_length)
        stats = prepared.stats
        if not prepared.units:
            self.last_stats = stats
            return np.zeros((0, self.dim), dtype=np.float32)
        pooled = self.embed_units(prepared.units, batch_size, max_batch_tokens, show_progress, stats)
        result = self.combine(prepared, pooled, normalize)
        stats.seconds = time.perf_counter() - start
        self.last_stats = stats
        return result[0] if single else result

    def prepare(self, texts: str | Sequence[str], *, prompt: str | None = None, prompt_name: str | None = None,
                truncate: str = "truncate", max_length: int | None = None) -> Prepared:
        """Tokenize (prompt included) and apply the length policy: the model-free half of :meth:`encode`.

        The server runs this in the request handler (token counts, refusals) and leaves the units to its batcher.
        """
        items = validate_texts([texts] if isinstance(texts, str) else texts)
        if truncate not in TRUNCATE_MODES:
            raise InputError(f"truncate must be one of {', '.join(TRUNCATE_MODES)}, got '{truncate}'")
        prefix_text = self.resolve_prompt(prompt, prompt_name)
        limit = min(max_length or self.max_length, self.max_length)
        extra = len(self._prefix) + len(self._suffix)
        room = limit - extra
        if room < 1:
            raise InputError(f"max_length {limit} leaves no room for text after special tokens")
        prepared = Prepared(n=len(items), stats=EncodeStats(texts=len(items)))
        if not items:
            return prepared
        # Units of work: (text index, content ids). Long texts become one or several units.
        for i, ids in enumerate(self.tokenize([prefix_text + t for t in items])):
            if len(ids) > room:
                if truncate == "error":
                    raise InputTooLong(f"item {i} has {len(ids) + extra} tokens, more than the model's limit of "
                                       f"{limit}")
                if truncate == "window":
                    for s in range(0, len(ids), room):
                        prepared.owner.append(i)
                        prepared.units.append(ids[s : s + room])
                    prepared.stats.windows += (len(ids) + room - 1) // room
                    prepared.tokens.append(len(ids) + extra * ((len(ids) + room - 1) // room))
                    continue
                prepared.stats.truncated.append(i)
                ids = ids[:room]
            prepared.owner.append(i)
            prepared.units.append(ids)
            prepared.tokens.append(len(ids) + extra)
        return prepared

    def combine(self, prepared: Prepared, pooled: np.ndarray, normalize: bool = True) -> np.ndarray:
        """Unit vectors -> one vector per text (windows averaged, weighted by their token counts)."""
        pooled = np.asarray(pooled, dtype=np.float32)
        if len(prepared.owner) == prepared.n:  # one unit per text, in order: nothing to average
            out = pooled.copy()
        else:
            weights = np.fromiter((max(len(u), 1) for u in prepared.units), dtype=np.float32,
                                  count=len(prepared.units))
            index = np.asarray(prepared.owner, dtype=np.int64)
            out = np.zeros((prepared.n, pooled.shape[1]), dtype=np.float32)
            np.add.at(out, index, pooled * weights[:, None])
            out /= np.bincount(index, weights, minlength=prepared.n).astype(np.float32)[:, None]
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def embed_units(self, units: list[list[int]], batch_size: int = 64, max_batch_tokens: int = 16384,
                    show_progress: bool | None = False, stats: EncodeStats | None = None) -> np.ndarray:
        """Pooled (unnormalized) float32 vectors of content-id sequences, in length-sorted token-budget batches."""
        stats = stats if stats is not None else EncodeStats()
        batches = plan_batches([len(u) for u in units], len(self._prefix) + len(self._suffix), batch_size,
                               max_batch_tokens)
        stats.batches += len(batches)
        if show_progress is None:
            show_progress = len(units) >= 2000
        progress = None
        if show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(units), desc=f"encode {self.name}", unit="text", leave=False,
                            disable=None)
        result = np.empty((len(units), self.dim), dtype=np.float32)
        for batch in batches:
            features = self._features([units[k] for k in batch])
            stats.tokens += int(features["attention_mask"].sum())
            result[batch] = self._forward(features)
            if progress is not None:
                progress.update(len(batch))
        if progress is not None:
            progress.close()
        return result

    def _features(self, batch: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Padded model inputs (int64) for content-id units (lists or int arrays), special tokens added."""
        pre, suf = self._prefix, self._suffix
        width = max(len(ids) for ids in batch) + len(pre) + len(suf)
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for r, ids in enumerate(batch):
            end = len(pre) + len(ids)
            input_ids[r, :len(pre)] = pre
            input_ids[r, len(pre):end] = ids
            input_ids[r, end:end + len(suf)] = suf
            mask[r, :end + len(suf)] = 1
        features = {"input_ids": input_ids, "attention_mask": mask}
        if self._wants_token_types:
            features["token_type_ids"] = np.zeros_like(input_ids)
        return features

    def _forward(self, features: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover - abstract
        """Padded ids -> pooled float32 vectors, shape (batch, dim)."""
        raise NotImplementedError


def plan_batches(lengths: Sequence[int], extra: int, batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches, longest first, each at most ``batch_size`` items and ``max_batch_tokens``
    padded tokens (``extra``: special tokens added to every item). One rule for embedders and rerankers."""
    order = sorted(range(len(lengths)), key=lambda k: lengths[k], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    for k in order:
        # Sorted longest first: the first item of a batch sets its padded length.
        width = lengths[current[0]] + extra if current else lengths[k] + extra
        if current and (len(current) >= batch_size or width * (len(current) + 1) > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(k)
    if current:
        batches.append(current)
    return batches


def named_prompt(embedder, name: str | None, *, optional: bool = False) -> str:
    """The text of ``embedder``'s prompt ``name`` ("" for None): the one rule for prompt names.

    An unknown name is an error naming the model's prompts, unless ``optional``: a convention such as e5's
    query/passage pair, which a model without that prompt (m3e-base, say) simply does not use.
    """
    if name is None:
        return ""
    prompts = embedder.prompts
    if name in prompts:
        return prompts[name]
    if optional:
        return ""
    known = ", ".join(sorted(prompts)) or "none"
    raise InputError(f"model {embedder.name} has no prompt named '{name}' (it has: {known})")


def role_prompt(embedder, role: str) -> str | None:
    """The prompt name for a text's role ("query" or "passage") when the model has one, else None: the e5-style
    convention every caller follows (sentences compared with sentences are queries)."""
    if role not in ("query", "passage"):
        raise ValueError(f"role is query or passage, got {role!r}")
    return role if role in embedder.prompts else None


_NAME = re.compile(r"[A-Za-z_][\w.-]{0,63}")


def prompt_text(embedder, value: str | None, *, where: str = "prompt") -> str:
    """A training instruction: a prompt name of the model, or literal text (with a space, a colon, CJK...).

    A bare identifier that is not one of the model's prompts is refused (a typo of ``query`` would otherwise
    train with the word itself as a prefix).
    """
    if value is None or value == "":
        return ""
    if value in embedder.prompts:
        return embedder.prompts[value]
    if _NAME.fullmatch(value):
        known = ", ".join(sorted(embedder.prompts)) or "none"
        raise InputError(f"{where}: model {embedder.name} has no prompt named '{value}' (it has: {known}); "
                         f"literal instruction text needs a space or punctuation, e.g. '{value}: '")
    return value


def result_label(embedder) -> str:
    """The name results are filed under: ``name``, or ``name@backend`` off the torch path."""
    backend = getattr(embedder, "backend", "torch")
    return embedder.name if backend == "torch" else f"{embedder.name}@{backend}"


def special_framing(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after one text (e.g. <s> ... </s>)."""
    probe = "m3e probe 你好"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return full[:i], full[i + len(plain) :]
    raise RuntimeError("cannot locate the text inside the tokenizer's special-token template")
