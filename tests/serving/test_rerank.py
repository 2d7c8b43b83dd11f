"""The rerank routes: Jina/Cohere /v1/rerank and TEI /rerank, in process for the contract and bad input, and on a
live CLI server with the real clients (cohere's SDK, LlamaIndex's TEI reranker) and FastGPT/Dify-shaped requests."""

from __future__ import annotations

import json
import signal

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from m3e.serving.app import ServeConfig, create_app
from tests.serving.test_robustness import malformed_bodies
from tests.serving.test_server import KEY, start_cli_server

QUERY = "今天天气很好"
DOCS = ["今天阳光明媚", "我喜欢吃苹果", "他在北京工作", "这部电影很好看", "The weather is nice today"]


def want(tiny_reranker_dir, docs=DOCS, query=QUERY):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(tiny_reranker_dir), device="cpu").predict([(query, d) for d in docs])


@pytest.fixture()
def client(tiny_model, tiny_reranker):
    app = create_app(ServeConfig(models=["tiny"], rerankers=["rr"], max_documents=8),
                     load=lambda t: tiny_model, load_reranker=lambda t: tiny_reranker)
    app.state.service.load_all()
    assert app.state.service.loaded, app.state.service.error
    yield TestClient(app, raise_server_exceptions=False)
    app.state.service.stop()


def test_jina_contract(client, tiny_reranker_dir):
    r = client.post("/v1/rerank", json={"model": "rr", "query": QUERY, "documents": DOCS})
    assert r.status_code == 200, r.text
    body = r.json()
    ref = want(tiny_reranker_dir)
    assert [x["index"] for x in body["results"]] == list(np.argsort(-ref, kind="stable"))
    scores = [x["relevance_score"] for x in body["results"]]
    np.testing.assert_allclose(scores, np.sort(ref)[::-1], atol=1e-4)
    assert all(0 <= s <= 1 for s in scores) and "document" not in body["results"][0]
    assert body["model"] == "rr" and body["usage"]["total_tokens"] > len(DOCS)
    # documents as {text}, top_n, return_documents; the model may be left out (the first reranker)
    r = client.post("/v1/rerank", json={"query": {"text": QUERY}, "documents": [{"text": d} for d in DOCS],
                                        "top_n": 2, "return_documents": True}).json()
    assert len(r["results"]) == 2 and r["results"][0]["document"]["text"] == DOCS[int(np.argmax(ref))]
    # a top_n above the number of documents returns them all (LangChain and Dify send a fixed top_n)
    assert len(client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS[:2], "top_n": 5}
                           ).json()["results"]) == 2
    assert client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS}).json()["results"] == \
        client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS}).json()["results"]


def test_tei_contract(client, tiny_reranker_dir, tiny_reranker):
    ref = want(tiny_reranker_dir)
    r = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [x["index"] for x in out] == list(np.argsort(-ref, kind="stable"))
    assert all(x["text"] == DOCS[x["index"]] for x in out)
    raw = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    logits = tiny_reranker.score(QUERY, DOCS, raw=True)
    np.testing.assert_allclose([x["score"] for x in sorted(raw, key=lambda x: x["index"])], logits, atol=1e-4)
    # the Jina shape on /rerank too (Dify with a base URL that has no /v1)
    assert "results" in client.post("/rerank", json={"query": QUERY, "documents": DOCS}).json()


def test_long_document_reads_windows_and_says_so(client, tiny_reranker):
    long = "".join(DOCS[:4]) * 4
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": ["短文", long]})
    assert r.status_code == 200 and r.headers["X-Windowed-Documents"] == "1"
    item = next(x for x in r.json()["results"] if x["index"] == 1)
    assert item["windows"]["read"] >= 2
    assert item["relevance_score"] == pytest.approx(float(tiny_reranker.score(QUERY, ["短文", long])[1]), abs=1e-4)
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": [long], "max_chunks_per_doc": 1})
    assert r.headers["X-Truncated-Inputs"] == "1"
    r = client.post("/rerank", json={"query": QUERY, "texts": [long], "truncate": True})
    assert r.status_code == 200 and r.headers["X-Truncated-Inputs"] == "1"


@pytest.mark.parametrize(("route", "body", "status", "param", "says"), [
    ("/v1/rerank", {"query": "", "documents": ["a"]}, 400, "query", "empty string"),
    ("/v1/rerank", {"documents": ["a"]}, 400, "query", "missing required field 'query'"),
    ("/v1/rerank", {"query": "q"}, 400, "documents", "missing required field 'documents'"),
    ("/v1/rerank", {"query": "q", "documents": []}, 400, "documents", "empty list"),
    ("/v1/rerank", {"query": "q", "documents": "a"}, 400, "documents", "must be a list"),
    ("/v1/rerank", {"query": "q", "documents": ["a", 3]}, 400, "documents[1]", "not 3"),
    ("/v1/rerank", {"query": "q", "documents": ["a", {"txt": "b"}]}, 400, "documents[1]", "without a 'text'"),
    ("/v1/rerank", {"query": "q", "documents": ["a", " "]}, 400, "documents[1]", "empty string"),
    ("/v1/rerank", {"query": "q", "documents": ["a"] * 9}, 400, "documents", "at most 8"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 400, "top_n", "positive integer"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": True}, 400, "top_n", "positive integer"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "return_documents": "yes"}, 400, "return_documents", "true"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "model": "tiny"}, 400, "model", "is an embedding model"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "model": "nope"}, 404, "model", "available: rr"),
    ("/v1/embeddings", {"input": "a", "model": "rr"}, 400, "model", "is a reranker"),
    ("/rerank", {"query": "q", "texts": ["a", None]}, 400, "texts[1]", "not None"),
    ("/rerank", {"query": "q"}, 400, "documents", "'texts'"),
])
def test_named_4xx_errors(client, route, body, status, param, says):
    r = client.post(route, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and says in err["message"], err


def test_malformed_bodies_never_get_a_5xx(client):
    for route, field in (("/v1/rerank", b'"documents"'), ("/rerank", b'"texts"')):
        for why, body in malformed_bodies(seed=9)[::2]:
            text = body.replace(b'"input"', field)
            if text.startswith(b"{") and field in text:
                text = b'{"query": "q", ' + text[1:]
            r = client.post(route, content=text, headers={"content-type": "application/json"})
            assert r.status_code < 500, (route, why, r.status_code, r.text)
            if r.status_code != 200:
                assert set(r.json()["error"]) == {"message", "type", "param", "code"}, why
    assert client.get("/health").status_code == 200


def test_rerankers_only_server_refuses_embeddings(tiny_reranker):
    app = create_app(ServeConfig(rerankers=["rr"]), load_reranker=lambda t: tiny_reranker)
    app.state.service.load_all()
    c = TestClient(app, raise_server_exceptions=False)
    try:
        r = c.post("/v1/embeddings", json={"input": "a"})
        assert r.status_code == 404 and "only rerankers" in r.json()["error"]["message"]
        models = c.get("/v1/models").json()["data"]
        assert models == [{"id": "rr", "object": "model", "created": 0, "owned_by": "m3e", "type": "reranker",
                           "max_tokens": tiny_reranker.max_length}]
        assert c.post("/v1/rerank", json={"query": "q", "documents": ["a"]}).status_code == 200
    finally:
        app.state.service.stop()


# ---- the live server with real clients --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny_st_dir, tiny_reranker_dir):
    proc, url = start_cli_server(tiny_st_dir, "--reranker", f"bge-reranker-base={tiny_reranker_dir}",
                                 "--api-key", KEY)
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def auth() -> dict:
    return {"Authorization": f"Bearer {KEY}"}


def test_fastgpt_and_dify_shaped_requests(server, tiny_reranker_dir):
    ref = want(tiny_reranker_dir)
    order = list(np.argsort(-ref, kind="stable"))
    # FastGPT: POST {requestUrl} with {model, query, documents}; reads results[].index / relevance_score
    r = httpx.post(f"{server}/v1/rerank", headers=auth(),
                   json={"model": "bge-reranker-base", "query": QUERY, "documents": DOCS})
    assert r.status_code == 200 and [x["index"] for x in r.json()["results"]] == order
    # Dify's OpenAI-API-compatible provider: {model, query, documents, top_n, return_documents: true}
    r = httpx.post(f"{server}/v1/rerank", headers=auth(), json={
        "model": "bge-reranker-base", "query": QUERY, "documents": DOCS, "top_n": 3, "return_documents": True})
    res = r.json()["results"]
    assert [x["index"] for x in res] == order[:3] and res[0]["document"]["text"] == DOCS[order[0]]
    assert httpx.post(f"{server}/v1/rerank", json={"query": QUERY, "documents": DOCS}).status_code == 401


def test_cohere_sdk(server, tiny_reranker_dir):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key=KEY, base_url=server)
    resp = client.rerank(model="bge-reranker-base", query=QUERY, documents=DOCS, top_n=3)
    ref = want(tiny_reranker_dir)
    assert [x.index for x in resp.results] == list(np.argsort(-ref, kind="stable"))[:3]
    np.testing.assert_allclose([x.relevance_score for x in resp.results], np.sort(ref)[::-1][:3], atol=1e-4)


def test_llamaindex_tei_reranker(server, tiny_reranker_dir):
    pytest.importorskip("llama_index.postprocessor.tei_rerank")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    rerank = TextEmbeddingInference(base_url=server, top_n=2, auth_token=f"Bearer {KEY}")
    nodes = [NodeWithScore(node=TextNode(text=d), score=0.0) for d in DOCS]
    out = rerank.postprocess_nodes(nodes, QueryBundle(QUERY))
    ref = want(tiny_reranker_dir)
    assert [n.node.get_content() for n in out] == [DOCS[i] for i in np.argsort(-ref, kind="stable")[:2]]
    np.testing.assert_allclose([n.score for n in out], np.sort(ref)[::-1][:2], atol=1e-4)
