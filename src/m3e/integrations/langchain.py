"""LangChain: ``M3EEmbeddings(model=...)`` is a ``langchain_core.embeddings.Embeddings``."""

from __future__ import annotations

try:
    from langchain_core.embeddings import Embeddings
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("M3EEmbeddings needs langchain-core: pip install 'm3e[langchain]'") from exc

from m3e.integrations import prompt_names, resolve_embedder


class M3EEmbeddings(Embeddings):
    """``model``: a built-in name, folder or hub id (or a loaded Embedder); ``load_kwargs`` go to ``load_model``
    (device, backend, threads)."""

    def __init__(self, model=None, batch_size: int = 64, **load_kwargs):
        self.embedder = resolve_embedder(model, **load_kwargs)
        self.batch_size = batch_size
        self.query_prompt, self.document_prompt = prompt_names(self.embedder)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vecs = self.embedder.encode(list(texts), prompt_name=self.document_prompt, batch_size=self.batch_size)
        return vecs.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.encode([text], prompt_name=self.query_prompt)[0].tolist()
