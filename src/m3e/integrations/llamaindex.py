"""LlamaIndex: ``M3EEmbedding(model=...)`` is a ``llama_index.core.base.embeddings.base.BaseEmbedding``."""

from __future__ import annotations

from typing import Any

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("M3EEmbedding needs llama-index-core: pip install 'm3e[llamaindex]'") from exc

from m3e.integrations import prompt_names, resolve_embedder


class M3EEmbedding(BaseEmbedding):
    """``model``: a built-in name, folder or hub id (or a loaded Embedder); ``load_kwargs`` go to ``load_model``."""

    _embedder: Any = PrivateAttr()
    _prompts: tuple = PrivateAttr()

    def __init__(self, model=None, embed_batch_size: int = 64, **load_kwargs: Any):
        embedder = resolve_embedder(model, **load_kwargs)
        super().__init__(model_name=embedder.name, embed_batch_size=embed_batch_size)
        self._embedder = embedder
        self._prompts = prompt_names(embedder)

    @classmethod
    def class_name(cls) -> str:
        return "M3EEmbedding"

    def _encode(self, texts: list[str], prompt_name: str | None) -> list[list[float]]:
        if not texts:
            return []
        return self._embedder.encode(list(texts), prompt_name=prompt_name, batch_size=self.embed_batch_size).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode([query], self._prompts[0])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode([text], self._prompts[1])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts, self._prompts[1])

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)
