"""The server under bad input and faults, in process (the app through httpx's ASGI transport) where possible.

A generated corpus of malformed bodies never gets a 5xx; an exception in the model fails only its batch; a dead
inference worker is restarted (and /health says 503 meanwhile); the token budget answers 429 before a body is
read; float JSON equals base64.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from m3e.serving.app import ServeConfig, create_app
from m3e.serving.batcher import settle
from tests.serving.test_batcher import Gated, _status, wait_for
from tests.serving.test_server import free_port


class Faulty:
    """The tiny model; ``fail`` makes the next embed_units calls raise that exception."""

    def __init__(self, inner):
        self.inner = inner
        self.fail: list[BaseException] = []

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def embed_units(self, units, *args, **kwargs):
        if self.fail:
            raise self.fail.pop(0)
        return self.inner.embed_units(units, *args, **kwargs)


@pytest.fixture()
def app_with(tiny_model):
    """Build an app around a (wrapped) tiny model, loaded synchronously; stopped at the end."""
    apps = []

    def make(wrapper=None, **config):
        model = wrapper or tiny_model
        app = create_app(ServeConfig(models=["tiny"], **config), load=lambda target: model)
        app.state.service.load_all()
        assert app.state.service.loaded, app.state.service.error
        apps.append(app)
        return TestClient(app, raise_server_exceptions=False)

    yield make
    for app in apps:
        app.state.service.stop()


def malformed_bodies(seed: int = 7) -> list[tuple[str, bytes]]:
    """Over 500 bad request bodies: wrong types per field, unicode edge cases, surrogates, deep nesting, huge
    numbers, duplicate keys, truncated and invalid JSON."""
    rng = random.Random(seed)
    weird = [None, True, False, 0, -1, 1.5, 10**30, -(10**30), "", " ", "\u200b", {}, [], [[]], [None], [1.5],
             [-1], [[-1]], [True], [[1, "a"]], ["ok", 3], ["ok", ""], ["ok", None], {"a": 1}, [{}], [[[]]],
             [2**40], [[2**40]], "x" * 3, ["\n\t "]]
    bodies: list[tuple[str, bytes]] = []

    def add(why: str, doc) -> None:
        bodies.append((why, doc if isinstance(doc, bytes) else json.dumps(doc).encode()))

    fields = {"input": "你好", "model": "tiny", "encoding_format": "float", "dimensions": 8, "input_type": "query",
              "user": "u"}
    for field in fields:
        for value in weird:
            if field == "input" and isinstance(value, str) and value.strip():
                continue  # a valid text
            if field in ("model",) and value is None:
                continue
            if field in ("encoding_format", "input_type", "dimensions", "user") and value is None:
                continue  # absent = default
            if field == "encoding_format" and value == "":
                continue  # empty = default, as OpenAI
            add(f"{field}={value!r:.30}", {**fields, field: value})
    for root in (None, 1, "text", [1, 2], [{"input": "x"}], True):
        add(f"root {root!r}", root)
    add("missing input", {"model": "tiny"})
    add("too many inputs", {"input": ["字"] * 2049})
    for n in (1, 100, 1_000, 1_025, 100_000):  # deep nesting in each field
        add(f"nested input {n}", b'{"input": ' + b"[" * n + b"]" * n + b"}")
        add(f"nested dimensions {n}", b'{"input": "a", "dimensions": ' + b"[" * n + b"]" * n + b"}")
    for number in (b"1e400", b"-1e400", b"9" * 5000, b"NaN", b"Infinity", b"-0", b"1.0", b"0x10", b"1_000"):
        add(f"dimensions {number[:10]!r}", b'{"input": "a", "dimensions": ' + number + b"}")
    for esc in ("\\ud800", "\\udfff", "\\ud800\\ud800", "a\\udc00b", "\\ud83d"):
        add(f"surrogate {esc}", f'{{"input": "{esc}"}}'.encode())
        add(f"surrogate in list {esc}", f'{{"input": ["ok", "{esc}"]}}'.encode())
        add(f"surrogate in model {esc}", f'{{"input": "a", "model": "{esc}"}}'.encode())
    add("duplicate keys, last wins bad", b'{"input": "a", "input": 5}')
    add("duplicate keys, bad dims", b'{"input": "a", "dimensions": 4, "dimensions": -4}')
    for raw in (b"", b" ", b"{", b"}", b"[", b'{"input"', b'{"input": ', b'{"input": "a"', b'{"input": ["a",]}',
                b'{input: "a"}', b"{'input': 'a'}", b'{"input": "a"}}', b"\xff\xfe", b'{"input": "\xff"}',
                b"\xef\xbb\xbf{\"input\": \"a\"}", b'{"input": "a\\x"}', b'{"input": "\\u12"}', b"null", b"nul"):
        add(f"raw {raw[:20]!r}", raw)
    names = list(fields)
    for _ in range(120):  # two bad fields at once
        a, b = rng.sample(names, 2)
        add(f"{a}+{b}", {**fields, a: rng.choice(weird[:12]), b: rng.choice(weird[12:])})
    for text in ("\\u0000", "\\u202e\\u05d0", "e\\u0301", "\\ufeff", "\\ud83d\\ude00", "\\u3000", "\\u0085"):
        add(f"unicode edge {text}", f'{{"input": ["{text}", 5]}}'.encode())
    valid = json.dumps({"input": ["今天天气很好", "我喜欢吃苹果", "他在北京工作"], "model": "tiny", "dimensions": 8,
                        "encoding_format": "base64", "user": "someone"}).encode()
    for cut in sorted(rng.sample(range(1, len(valid) - 1), 80)):
        add(f"truncated at {cut}", valid[:cut])
    for _ in range(80):  # random byte flips in a valid body
        b = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        add("byte flips", bytes(b))
    return bodies


def test_malformed_bodies_never_get_a_5xx(app_with):
    client = app_with()
    bodies = malformed_bodies()
    assert len(bodies) >= 500
    statuses: dict[int, int] = {}
    for why, body in bodies:
        r = client.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (why, r.status_code, r.text)
        if r.status_code != 200:  # a few byte flips stay valid JSON with valid texts
            err = r.json()["error"]
            assert set(err) == {"message", "type", "param", "code"} and err["message"], why
        assert client.get("/health").status_code == 200, why
    assert statuses.get(200, 0) < 60 and statuses[400] > 400


def test_other_routes_never_get_a_5xx(app_with):
    client = app_with()
    for why, body in malformed_bodies(seed=8)[::3]:
        text = body.replace(b'"input"', b'"inputs"')
        for route, payload in (("/embed", text), ("/similarity", b'{"inputs": {"source_sentence": "a", '
                                                                   b'"sentences": ' + text + b"}}")):
            r = client.post(route, content=payload, headers={"content-type": "application/json"})
            assert r.status_code < 500, (route, why, r.status_code, r.text)


@pytest.mark.parametrize(("route", "body", "status", "param", "says"), [
    ("/v1/embeddings", {"input": "a\ud800b"}, 400, "input", "unpaired UTF-16 surrogate"),
    ("/v1/embeddings", {"input": ["ok", "a\udc00"]}, 400, "input", "input[1] contains an unpaired"),
    ("/v1/embeddings", {"input": ["x"] * 17}, 400, "input", "at most 16"),
    ("/embed", {"inputs": "x", "prompt_name": "nope"}, 400, "prompt_name", "no prompt named 'nope'"),
    ("/embed", {"inputs": [""]}, 400, "inputs", "inputs[0] is an empty string"),
    ("/similarity", {"inputs": {"source_sentence": "你好", "sentences": "世界"}}, 400, "inputs.sentences", "list"),
    ("/similarity", {"inputs": {"source_sentence": "你好", "sentences": []}}, 400, "inputs.sentences", "empty"),
])
def test_named_4xx_errors(app_with, route, body, status, param, says):
    client = app_with(max_inputs=16)
    content = json.dumps(body).encode()  # json.dumps escapes lone surrogates as \\udXXX, as a client would
    r = client.post(route, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and says in err["message"], err


def test_float_json_equals_base64(app_with, tiny_model):
    client = app_with()
    texts = ["今天天气很好", "The weather is nice today", "机器学习很有趣"]
    f = client.post("/v1/embeddings", json={"input": texts}).json()
    b = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"}).json()
    as_float = np.array([d["embedding"] for d in f["data"]], dtype=np.float32)  # shortest float32 text round-trips
    as_b64 = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in b["data"]])
    np.testing.assert_array_equal(as_float, as_b64)
    np.testing.assert_allclose(as_b64, tiny_model.encode(texts, prompt_name="query"), atol=1e-6)
    big = [f"第{i}句" for i in range(300)]  # serialized in a worker thread
    r = client.post("/v1/embeddings", json={"input": big})
    np.testing.assert_allclose([d["embedding"] for d in r.json()["data"]], tiny_model.encode(big, prompt_name="query"),
                               atol=1e-6)


def test_a_failing_batch_fails_only_its_requests(app_with, tiny_model):
    faulty = Faulty(tiny_model)
    client = app_with(faulty)
    faulty.fail.append(RuntimeError("CUDA out of memory (injected)"))
    r = client.post("/v1/embeddings", json={"input": ["你好"]})
    assert r.status_code == 500 and r.json()["error"]["code"] == "inference_error"
    assert "CUDA out of memory (injected)" in r.json()["error"]["message"]
    assert client.get("/health").status_code == 200
    r = client.post("/v1/embeddings", json={"input": ["你好"]})
    assert r.status_code == 200
    assert "m3e_batch_errors_total{model=\"tiny\"} 1.0" in client.get("/metrics").text


class WorkerKill(BaseException):
    """Escapes the per-batch handler, as a bug in the loop itself would: the worker thread dies."""


# The worker thread dying is the fault under test; pytest would report its exception as a warning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_is_restarted_and_health_says_503_meanwhile(app_with, tiny_model):
    faulty = Faulty(tiny_model)
    client = app_with(faulty)
    batcher = client.app.state.service.models["tiny"].batcher
    batcher.restart_delay = 120  # hold the restart until the test has seen the 503
    faulty.fail.append(WorkerKill())
    r = client.post("/v1/embeddings", json={"input": ["你好"]})
    assert r.status_code == 500 and "WorkerDied" in r.json()["error"]["message"]  # not a hang
    wait_for(lambda: not batcher.alive())
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["error"]["code"] == "worker_down"
    assert client.post("/v1/embeddings", json={"input": ["你好"]}).status_code == 503
    batcher._wake.set()  # end the restart delay now
    wait_for(lambda: client.get("/health").status_code == 200)
    assert client.post("/v1/embeddings", json={"input": ["你好"]}).status_code == 200
    assert batcher.restarts == 1
    assert 'm3e_worker_restarts_total{model="tiny"} 1.0' in client.get("/metrics").text


def test_cancelled_request_cannot_kill_the_worker(tiny_model):
    """The race of the old worker: a client cancels between the done() check and set_exception."""
    from concurrent.futures import Future

    f = Future()
    f.cancel()
    assert settle(f, error=RuntimeError("x")) is False and settle(f, 1) is False
    from m3e.serving.batcher import Batcher

    faulty = Faulty(tiny_model)
    gated = Gated(faulty)
    b = Batcher(gated, name="t")
    job = b.submit(tiny_model.prepare(["你好"]).units)
    assert gated.entered.wait(10)
    job.future.cancel()  # the client left while its batch runs...
    faulty.fail.append(RuntimeError("boom"))  # ...and the batch fails
    gated.gate.set()
    wait_for(lambda: gated.calls == [1])
    again = b.submit(tiny_model.prepare(["世界"]).units)
    assert again.future.result(10).shape == (1, tiny_model.dim)  # the worker lives on
    assert b.alive() and b.restarts == 0
    b.stop()


def test_token_budget_answers_429_before_reading_the_body(tiny_model):
    import uvicorn

    gated = Gated(tiny_model)
    gated.gate.set()
    port = free_port()
    app = create_app(ServeConfig(models=["tiny"], port=port, max_queue_tokens=4096), load=lambda target: gated)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    import httpx

    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _status(url) == 200, 60)
    try:
        gated.gate.clear()
        gated.entered.clear()
        held = {}
        a = threading.Thread(target=lambda: held.setdefault("r", httpx.post(
            f"{url}/v1/embeddings", json={"input": ["长文本" * 20] * 40}, timeout=60)))
        a.start()
        assert gated.entered.wait(10)  # request a holds about 2,400 of the 4,096 tokens
        service = app.state.service
        assert service.budget.used > 2000
        # request b declares a 12 kB body (about 4,000 tokens) and never sends it: refused at once, unread
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        raw.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 12000\r\n\r\n")
        answer = raw.recv(4096).decode()
        raw.close()
        assert answer.startswith("HTTP/1.1 429") and "retry-after:" in answer.lower(), answer
        assert '"code":"queue_full"' in answer
        gated.gate.set()
        a.join(60)
        assert held["r"].status_code == 200
        wait_for(lambda: service.budget.used == 0)
        # a request that needs more than the whole budget is a 413 (once the server is idle enough to read it)
        r = httpx.post(f"{url}/v1/embeddings", json={"input": ["长文本" * 60] * 100})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "你好"}).status_code == 200
    finally:
        gated.gate.set()
        server.should_exit = True
        thread.join(30)
