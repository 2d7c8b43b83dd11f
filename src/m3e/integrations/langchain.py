"""LangChain: ``M3EEmbeddings(model=...)`` is a ``langchain_core.embeddings.Embeddings``; ``M3ERerank(model=...)``
a document compressor that reranks retrieved documents (use it in a ``ContextualCompressionRetriever``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from langchain_core.documents import Document
    from langchain_core.documents.compressor import BaseDocumentCompressor
    from langchain_core.embeddings import Embeddings
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("M3EEmbeddings needs langchain-core: pip install 'm3e[langchain]'") from exc

from m3e.integrations import prompt_names, resolve_embedder, resolve_reranker


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


class M3ERerank(BaseDocumentCompressor):
    """The ``top_n`` documents by a reranker's relevance to the query, each with ``relevance_score`` in its
    metadata (as LangChain's Cohere/Jina rerankers do). ``model``: a cross-encoder folder, hub id or built-in
    reranker (or a loaded Reranker)."""

    model: Any = None
    top_n: int = 3
    reranker: Any = None

    def __init__(self, model=None, top_n: int = 3, **load_kwargs):
        super().__init__(model=model, top_n=top_n, reranker=resolve_reranker(model, **load_kwargs))

    def compress_documents(self, documents: Sequence[Document], query: str, callbacks=None) -> Sequence[Document]:
        docs = list(documents)
        if not docs:
            return []
        ranked = self.reranker.rank(query, [d.page_content for d in docs], top_k=self.top_n)
        return [Document(page_content=docs[r["corpus_id"]].page_content, id=docs[r["corpus_id"]].id,
                         metadata={**docs[r["corpus_id"]].metadata, "relevance_score": r["score"]})
                for r in ranked]
