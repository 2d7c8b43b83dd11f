"""The adapters inside the real libraries: LangChain, LlamaIndex and Chroma find what m3e itself ranks first."""

from __future__ import annotations

import numpy as np
import pytest

DOCS = ["今天天气很好", "我喜欢吃苹果", "他在北京工作", "这部电影很好看", "机器学习很有趣"]


def best(tiny_model, query: str) -> str:
    sims = tiny_model.encode(DOCS, prompt_name="passage") @ tiny_model.encode([query], prompt_name="query")[0]
    return DOCS[int(np.argmax(sims))]


def test_langchain_embeddings_in_a_vector_store(tiny_model, tiny_st_dir):
    pytest.importorskip("langchain_core", reason="install m3e[langchain] (CI installs it)")
    from langchain_core.vectorstores import InMemoryVectorStore

    from m3e.integrations.langchain import M3EEmbeddings

    emb = M3EEmbeddings(str(tiny_st_dir))
    np.testing.assert_allclose(emb.embed_query("苹果"), tiny_model.encode(["苹果"], prompt_name="query")[0], atol=1e-6)
    np.testing.assert_allclose(emb.embed_documents(DOCS), tiny_model.encode(DOCS, prompt_name="passage"), atol=1e-6)
    store = InMemoryVectorStore.from_texts(DOCS, emb)
    assert store.similarity_search("苹果", k=1)[0].page_content == best(tiny_model, "苹果")


def test_llamaindex_embedding_in_a_vector_index(tiny_model):
    pytest.importorskip("llama_index.core", reason="install m3e[llamaindex] (CI installs it)")
    from llama_index.core import Document, Settings, VectorStoreIndex

    from m3e.integrations.llamaindex import M3EEmbedding

    emb = M3EEmbedding(tiny_model)  # an already loaded model works too
    np.testing.assert_allclose(emb.get_query_embedding("电影"), tiny_model.encode(["电影"], prompt_name="query")[0],
                               atol=1e-6)
    np.testing.assert_allclose(emb.get_text_embedding_batch(DOCS), tiny_model.encode(DOCS, prompt_name="passage"),
                               atol=1e-6)
    Settings.llm = None
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS], embed_model=emb)
    nodes = index.as_retriever(similarity_top_k=1).retrieve("电影")
    assert nodes[0].node.get_content() == best(tiny_model, "电影")


def test_chroma_embedding_function_in_a_collection(tiny_model, tiny_st_dir):
    chromadb = pytest.importorskip("chromadb", reason="install m3e[chroma] (CI installs it)")
    from chromadb.config import Settings

    from m3e.integrations.chroma import M3EEmbeddingFunction

    fn = M3EEmbeddingFunction(str(tiny_st_dir))
    client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
    col = client.create_collection("docs", embedding_function=fn, configuration={"hnsw": {"space": "cosine"}})
    col.add(ids=[str(i) for i in range(len(DOCS))], documents=DOCS)
    got = col.get(ids=["0"], include=["embeddings"])["embeddings"][0]
    np.testing.assert_allclose(got, tiny_model.encode([DOCS[0]], prompt_name="passage")[0], atol=1e-6)
    res = col.query(query_texts=["北京"], n_results=1)
    assert res["documents"][0][0] == best(tiny_model, "北京")
    rebuilt = M3EEmbeddingFunction.build_from_config(fn.get_config())
    np.testing.assert_allclose(rebuilt(["你好"])[0], fn(["你好"])[0], atol=1e-6)


def test_rerankers_in_langchain_and_llamaindex(tiny_reranker, tiny_reranker_dir):
    """Both adapters return the top n in CrossEncoder.predict's order, with its scores."""
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from sentence_transformers import CrossEncoder

    from m3e.integrations.langchain import M3ERerank as LCRerank
    from m3e.integrations.llamaindex import M3ERerank as LIRerank

    texts = ["今天阳光明媚", "我喜欢吃苹果", "他在北京工作", "这部电影很好看"]
    ref = CrossEncoder(str(tiny_reranker_dir), device="cpu").predict([("今天天气很好", t) for t in texts])
    want = [texts[i] for i in np.argsort(-ref, kind="stable")[:2]]
    out = LCRerank(str(tiny_reranker_dir), top_n=2, device="cpu").compress_documents(
        [Document(page_content=t, metadata={"n": i}) for i, t in enumerate(texts)], "今天天气很好")
    assert [d.page_content for d in out] == want and out[0].metadata["n"] == texts.index(want[0])
    assert abs(out[0].metadata["relevance_score"] - float(ref.max())) < 1e-4
    nodes = LIRerank(tiny_reranker, top_n=2).postprocess_nodes(
        [NodeWithScore(node=TextNode(text=t), score=0.0) for t in texts], QueryBundle("今天天气很好"))
    assert [n.node.get_content() for n in nodes] == want
