"""LlamaIndex: ``M3EEmbedding(model=...)`` is a ``llama_index.core.base.embeddings.base.BaseEmbedding``;
``M3ERerank(model=...)`` a node postprocessor that reranks retrieved nodes."""

from __future__ import annotations

from typing import Any

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import NodeWithScore, QueryBundle
    from pydantic import PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("M3EEmbedding needs llama-index-core: pip install 'm3e[llamaindex]'") from exc

from m3e.integrations import prompt_names, resolve_embedder, resolve_reranker


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


class M3ERerank(BaseNodePostprocessor):
    """The ``top_n`` nodes by a reranker's relevance to the query (the node's score becomes it)."""

    top_n: int = 3
    _reranker: Any = PrivateAttr()

    def __init__(self, model=None, top_n: int = 3, **load_kwargs: Any):
        super().__init__(top_n=top_n)
        self._reranker = resolve_reranker(model, **load_kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "M3ERerank"

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
                           ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("M3ERerank needs the query (a QueryBundle)")
        if not nodes:
            return []
        ranked = self._reranker.rank(query_bundle.query_str, [n.node.get_content() for n in nodes],
                                     top_k=self.top_n)
        return [NodeWithScore(node=nodes[r["corpus_id"]].node, score=r["score"]) for r in ranked]
