"""Chroma: ``M3EEmbeddingFunction(model=...)`` is a ``chromadb`` ``EmbeddingFunction`` (documents get the passage
prompt, ``embed_query`` the query prompt; Chroma 1.x calls it for ``query_texts``)."""

from __future__ import annotations

from typing import Any

try:
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("M3EEmbeddingFunction needs chromadb: pip install 'm3e[chroma]'") from exc

from m3e.integrations import prompt_names, resolve_embedder


class M3EEmbeddingFunction(EmbeddingFunction[Documents]):
    def __init__(self, model=None, batch_size: int = 64, **load_kwargs: Any):
        self._model_arg = model if isinstance(model, str) else None
        self._load_kwargs = {k: v for k, v in load_kwargs.items() if isinstance(v, str | int | float | bool)}
        self.embedder = resolve_embedder(model, **load_kwargs)
        self.batch_size = batch_size
        self.query_prompt, self.document_prompt = prompt_names(self.embedder)

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.encode(list(input), prompt_name=self.document_prompt, batch_size=self.batch_size))

    def embed_query(self, input: Documents) -> Embeddings:
        return list(self.embedder.encode(list(input), prompt_name=self.query_prompt, batch_size=self.batch_size))

    @staticmethod
    def name() -> str:
        return "m3e"

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {"model": self._model_arg or self.embedder.name, "batch_size": self.batch_size, **self._load_kwargs}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> M3EEmbeddingFunction:
        config = dict(config)
        return M3EEmbeddingFunction(config.pop("model", None), config.pop("batch_size", 64), **config)
