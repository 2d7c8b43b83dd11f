"""The real server on loopback, called with the official openai client, raw httpx and LangChain."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import SAMPLE

KEY = "sk-test-123"
TEXTS = [s for s in SAMPLE if s.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("server did not become healthy")


def wait_until(cond, timeout: float = 60) -> None:
    """Poll a condition until it holds (a deadline, never a fixed sleep)."""
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


def metric(url: str, name: str, headers: dict | None = None) -> float:
    """A Prometheus metric's value (summed over labels) from the server's /metrics."""
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in " {")


def start_cli_server(model_dir: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    script = Path(sys.executable).with_name("m3e")
    cmd = [str(script), "serve", "--model", f"tiny={model_dir}", "--port", str(port), "--log-level", "warning",
           "--threads", "1", *extra]
    env = {k: v for k, v in os.environ.items() if k != "M3E_API_KEY"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


@pytest.fixture(scope="module")
def server(tiny_st_dir):
    proc, url = start_cli_server(tiny_st_dir, "--api-key", KEY, "--max-inputs", "16", "--max-body-bytes", "20000")
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def auth() -> dict:
    return {"Authorization": f"Bearer {KEY}"}


def expected(tiny_model, texts, prompt_name="query"):
    return tiny_model.encode(texts, prompt_name=prompt_name)


def test_openai_client_float_and_base64(server, tiny_model):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    default = client.embeddings.create(model="tiny", input=TEXTS)  # the client asks for base64 and decodes it
    as_float = client.embeddings.create(model="tiny", input=TEXTS, encoding_format="float")
    want = expected(tiny_model, TEXTS)
    for resp in (default, as_float):
        got = np.array([d.embedding for d in resp.data])
        assert [d.index for d in resp.data] == list(range(len(TEXTS)))
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert resp.model == "tiny"
    tokens = sum(tiny_model.count_tokens(TEXTS, prompt="query: "))
    truncated_extra = sum(max(0, n - tiny_model.max_length) for n in tiny_model.count_tokens(TEXTS, "query: "))
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens == tokens - truncated_extra
    one = client.embeddings.create(model="tiny", input="今天天气很好", dimensions=8, encoding_format="float")
    v = np.array(one.data[0].embedding)
    cut = want[0][:8] / np.linalg.norm(want[0][:8])
    assert v.shape == (8,) and np.allclose(v, cut, atol=1e-5)


def test_raw_contract_and_routes(server, tiny_model):
    r = httpx.post(f"{server}/v1/embeddings", headers=auth(),
                   json={"input": ["我喜欢吃苹果"], "model": "tiny", "encoding_format": "base64"})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"
    vec = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, expected(tiny_model, ["我喜欢吃苹果"])[0], atol=1e-6)
    # /embeddings alias, input_type extension (passage prompt), model omitted -> the default model
    r = httpx.post(f"{server}/embeddings", headers=auth(), json={"input": "文本", "input_type": "document"})
    np.testing.assert_allclose(r.json()["data"][0]["embedding"], expected(tiny_model, ["文本"], "passage")[0],
                               atol=1e-5)
    models = httpx.get(f"{server}/v1/models", headers=auth()).json()
    assert models["data"][0]["id"] == "tiny" and models["data"][0]["dimensions"] == tiny_model.dim
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    r = httpx.post(f"{server}/embed", headers=auth(), json={"inputs": ["你好", "世界"]})
    np.testing.assert_allclose(r.json(), expected(tiny_model, ["你好", "世界"]), atol=1e-5)
    r = httpx.post(f"{server}/similarity", headers=auth(),
                   json={"inputs": {"source_sentence": "你好", "sentences": ["你好", "世界"]}})
    e = expected(tiny_model, ["你好", "你好", "世界"])
    np.testing.assert_allclose(r.json(), e[1:] @ e[0], atol=1e-5)
    metrics = httpx.get(f"{server}/metrics", headers=auth()).text
    assert 'm3e_requests_total{route="/v1/embeddings",status="200"}' in metrics
    assert "m3e_request_latency_seconds_bucket" in metrics and "m3e_batch_inputs_bucket" in metrics


def test_long_input_is_truncated_and_counted(server, tiny_model):
    long = "长文本" * 40
    r = httpx.post(f"{server}/v1/embeddings", headers=auth(), json={"input": [long, "短"], "model": "tiny"})
    assert r.status_code == 200 and r.headers["x-truncated-inputs"] == "1"
    assert r.json()["usage"]["prompt_tokens"] == tiny_model.max_length + tiny_model.count_tokens(["短"], "query: ")[0]


BAD = [
    ("wrong type", {"input": 5}, 400, "input"),
    ("nested wrong type", {"input": ["ok", 3]}, 400, "input"),
    ("empty string", {"input": ["ok", " "]}, 400, "input"),
    ("empty list", {"input": []}, 400, "input"),
    ("missing input", {"model": "tiny"}, 400, "input"),
    ("too many inputs", {"input": ["x"] * 17}, 400, "input"),
    ("bad dimensions", {"input": "x", "dimensions": 0}, 400, "dimensions"),
    ("too many dimensions", {"input": "x", "dimensions": 100000}, 400, "dimensions"),
    ("bad encoding_format", {"input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
    ("unknown model", {"input": "x", "model": "gpt-9"}, 404, "model"),
    ("token ids without a table", {"input": [[1, 2, 3]]}, 400, "input"),
    ("bad input_type", {"input": "x", "input_type": "both"}, 400, "input_type"),
]


@pytest.mark.parametrize(("why", "body", "status", "param"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_openai_errors(server, why, body, status, param):
    r = httpx.post(f"{server}/v1/embeddings", headers=auth(), json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param and err["message"]
    if why == "token ids without a table":
        assert "check_embedding_ctx_length=False" in err["message"]
    assert httpx.get(f"{server}/health").status_code == 200  # still healthy


@pytest.mark.parametrize(("why", "kwargs", "status"), [
    ("invalid json", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
    ("wrong content type", {"content": b"input=x", "headers": {"content-type": "text/plain"}}, 415),
    ("huge body", {"content": json.dumps({"input": "x" * 30000}).encode(),
                   "headers": {"content-type": "application/json"}}, 413),
    ("no key", {"json": {"input": "x"}, "auth": False}, 401),
    ("wrong key", {"json": {"input": "x"}, "headers": {"Authorization": "Bearer sk-wrong"}}, 401),
])
def test_bad_http_gets_openai_errors(server, why, kwargs, status):
    kwargs = dict(kwargs)
    headers = dict(kwargs.pop("headers", {}))
    if kwargs.pop("auth", True) and "Authorization" not in headers:
        headers.update(auth())
    r = httpx.post(f"{server}/v1/embeddings", headers=headers, **kwargs)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server}/health").status_code == 200


def test_unknown_route_and_method(server):
    r = httpx.get(f"{server}/v2/nothing", headers=auth())
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = httpx.get(f"{server}/v1/embeddings", headers=auth())
    assert r.status_code == 405 and "error" in r.json()


def test_64_concurrent_clients(server, tiny_model):
    def one(i: int):
        texts = [f"{TEXTS[i % len(TEXTS)]} {i}", f"第{i}个请求", TEXTS[(i * 3) % len(TEXTS)]]
        r = httpx.post(f"{server}/v1/embeddings", headers=auth(), json={"input": texts, "model": "tiny"},
                       timeout=60)
        return texts, r

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(64)))
    for texts, r in results:
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]])
        np.testing.assert_allclose(got, expected(tiny_model, texts), atol=1e-5)


def test_langchain_openai_embeddings(server, tiny_model):
    lc = pytest.importorskip("langchain_openai")
    emb = lc.OpenAIEmbeddings(model="tiny", base_url=f"{server}/v1", api_key=KEY, check_embedding_ctx_length=False,
                              max_retries=0)
    np.testing.assert_allclose(emb.embed_documents(TEXTS[:4]), expected(tiny_model, TEXTS[:4]), atol=1e-5)
    np.testing.assert_allclose(emb.embed_query("你好"), expected(tiny_model, ["你好"])[0], atol=1e-5)


def test_token_ids_decoded_with_a_local_table(tiny_st_dir, tiny_model, tmp_path):
    """A cl100k-format table (here: the 256 single bytes) lets token-id inputs through, decoded to text."""
    pytest.importorskip("tiktoken")
    table = tmp_path / "bytes.tiktoken"
    table.write_text("".join(f"{base64.b64encode(bytes([b])).decode()} {b}\n" for b in range(256)))
    proc, url = start_cli_server(tiny_st_dir, "--cl100k-file", str(table))
    try:
        ids = list("你好".encode())
        r = httpx.post(f"{url}/v1/embeddings", json={"input": [ids, list(b"hello")]})
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]])
        np.testing.assert_allclose(got, expected(tiny_model, ["你好", "hello"]), atol=1e-5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_sigterm_finishes_in_flight_requests(tiny_st_dir):
    proc, url = start_cli_server(tiny_st_dir, "--max-batch-tokens", "64")  # many small batches: seconds of work
    texts = [f"{t} {i}" for i in range(160) for t in TEXTS][:2048]
    results = {}

    def call():
        results["r"] = httpx.post(f"{url}/v1/embeddings", json={"input": texts}, timeout=120)
        results["done"] = time.perf_counter()

    worker = threading.Thread(target=call)
    worker.start()
    # wait until the request is admitted and being embedded (it takes seconds with small batches)
    wait_until(lambda: metric(url, "m3e_tokens_in_flight") > 0)
    proc.send_signal(signal.SIGTERM)
    signalled = time.perf_counter()
    worker.join(120)
    # uvicorn re-raises the captured SIGTERM after a graceful exit, so the status says "terminated by SIGTERM"
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    r = results["r"]
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == len(texts) and results["done"] > signalled  # it was in flight
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)  # and then it is gone
    report = next(line for line in proc.stderr.read().splitlines() if line.startswith("m3e serve: stopped"))
    counts = json.loads(report.split("requests ", 1)[1])
    assert counts["started"] == counts["answered"] and counts["by_status"]["200"] >= 1  # no request left unanswered


def test_serve_with_the_onnx_backend(tiny_st_dir, tiny_model):
    """`m3e serve --backend onnx`: the same OpenAI contract, vectors equal to torch's to ONNX precision."""
    pytest.importorskip("onnxruntime")
    proc, url = start_cli_server(tiny_st_dir, "--backend", "onnx")
    try:
        r = httpx.post(f"{url}/v1/embeddings", json={"input": TEXTS[:4], "model": "tiny"})
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]])
        np.testing.assert_allclose(got, expected(tiny_model, TEXTS[:4]), atol=5e-5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
