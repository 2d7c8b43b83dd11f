"""Dynamic batching, backpressure (429) and dropping requests whose client left, with a gated model."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest

from m3e.serving.batcher import Batcher, QueueFull
from m3e.serving.metrics import ServerMetrics
from tests.serving.test_server import free_port


class Gated:
    """The tiny model, but every embed_units call waits for the test to open the gate."""

    def __init__(self, inner):
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def embed_units(self, units, *args, **kwargs):
        self.calls.append(len(units))
        self.entered.set()
        assert self.gate.wait(30)
        return self.inner.embed_units(units, *args, **kwargs)


def wait_for(cond, timeout=10.0):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise TimeoutError
        time.sleep(0.01)


def test_queue_bound_merging_and_cancelled_jobs(tiny_model):
    gated = Gated(tiny_model)
    metrics = ServerMetrics()
    b = Batcher(gated, name="tiny", queue_size=3, metrics=metrics)
    texts = ["今天天气很好", "我喜欢吃苹果", "机器学习很有趣", "他在北京工作"]
    prepared = [tiny_model.prepare([t]) for t in texts]
    first = b.submit(prepared[0].units)
    gated.entered.wait(10)  # the worker holds job 1
    queued = [b.submit(p.units) for p in prepared[1:]]
    with pytest.raises(QueueFull):
        b.submit(prepared[0].units)
    queued[1].cancelled = True  # its client went away
    gated.gate.set()
    for job, p in zip([first, queued[0], queued[2]], [prepared[0], prepared[1], prepared[3]], strict=True):
        got = tiny_model.combine(p, job.future.result(10))
        np.testing.assert_allclose(got, tiny_model.encode(p_texts(p, texts, prepared)), atol=1e-6)
    assert queued[1].future.cancelled()
    assert gated.calls == [1, 2]  # the two live queued requests ran as one merged call
    assert metrics.dropped.labels("tiny")._value.get() == 1
    b.stop()


def p_texts(p, texts, prepared):
    return [texts[prepared.index(p)]]


@pytest.fixture()
def gated_server(tiny_model):
    import uvicorn

    from m3e.serving.app import ServeConfig, create_app

    gated = Gated(tiny_model)
    gated.gate.set()  # let the warm-up through
    port = free_port()
    app = create_app(ServeConfig(models=["tiny"], port=port, queue_size=1), load=lambda target: gated)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ok(url), 30)
    yield url, gated, app
    gated.gate.set()
    server.should_exit = True
    thread.join(30)


def _ok(url):
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_full_queue_answers_429_and_gone_clients_are_dropped(gated_server):
    url, gated, app = gated_server
    served = app.state.service.models["tiny"]
    gated.gate.clear()
    gated.entered.clear()
    results = {}
    a = threading.Thread(target=lambda: results.setdefault("a", httpx.post(f"{url}/v1/embeddings",
                                                                           json={"input": "甲"}, timeout=30)))
    a.start()
    assert gated.entered.wait(10)  # request a is being embedded
    # request b: queued, then its client hangs up
    raw = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    body = '{"input": "乙"}'.encode()
    raw.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    wait_for(lambda: served.batcher.depth() == 1)
    r = httpx.post(f"{url}/v1/embeddings", json={"input": "丙"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "queue_full"
    raw.close()
    wait_for(lambda: served.batcher._queue[0].cancelled)  # the handler saw the disconnect
    gated.gate.set()
    a.join(30)
    assert results["a"].status_code == 200
    wait_for(lambda: app.state.service.metrics.dropped.labels("tiny")._value.get() == 1)
    assert gated.calls[-1] == 1  # only request a was embedded; b was dropped, never computed
    assert httpx.post(f"{url}/v1/embeddings", json={"input": "丁"}).status_code == 200


def test_health_is_503_until_loaded(tiny_model):
    import uvicorn

    from m3e.serving.app import ServeConfig, create_app

    release = threading.Event()

    def slow_load(target):
        release.wait(30)
        return tiny_model

    port = free_port()
    app = create_app(ServeConfig(models=["tiny"], port=port), load=slow_load)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _status(url) == 503)
        r = httpx.post(f"{url}/v1/embeddings", json={"input": "x"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        release.set()
        wait_for(lambda: _status(url) == 200, 30)
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)


def _status(url):
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code
    except httpx.HTTPError:
        return None


def test_worker_trims_the_heap_after_batches(tiny_model):
    b = Batcher(tiny_model, name="tiny", trim_interval=0)
    job = b.submit(tiny_model.prepare(["今天天气很好"]).units)
    job.future.result(10)
    if b.trimmer.supported:
        wait_for(lambda: b.trimmer.trims >= 1)
    b.stop()


def _big_request(model, n=120):
    texts = [f"{t} {i}" for i, t in enumerate(["今天天气很好", "我喜欢吃苹果", "机器学习很有趣"] * (n // 3))]
    return texts, model.prepare(texts)


def test_a_large_request_is_sliced_and_never_holds_the_worker(tiny_model):
    """A request larger than one round is embedded a slice per round and requeued behind the requests that came
    meanwhile: a one-sentence request submitted after it finishes first; vectors equal one unsliced call."""
    gated = Gated(tiny_model)
    b = Batcher(gated, name="tiny", max_batch_tokens=64)  # a round is 256 tokens: ~20 of these units
    texts, big_p = _big_request(tiny_model)
    order: list[str] = []
    big = b.submit(big_p.units)
    big.future.add_done_callback(lambda f: order.append("big"))
    assert gated.entered.wait(10)  # round 1 (the first slice of the big request) is in the model
    small_p = tiny_model.prepare(["他在北京工作"])
    small = b.submit(small_p.units)
    small.future.add_done_callback(lambda f: order.append("small"))
    gated.gate.set()
    got_small = tiny_model.combine(small_p, small.future.result(30))
    got_big = tiny_model.combine(big_p, big.future.result(30))
    assert order == ["small", "big"]
    assert len(gated.calls) >= len(big_p.units) * 12 // 256 and max(gated.calls) < len(big_p.units)
    np.testing.assert_allclose(got_big, tiny_model.encode(texts), atol=1e-5)
    np.testing.assert_allclose(got_small, tiny_model.encode(["他在北京工作"]), atol=1e-5)
    b.stop()


def test_an_abandoned_large_request_stops_being_embedded(tiny_model):
    gated = Gated(tiny_model)
    b = Batcher(gated, name="tiny", max_batch_tokens=64)
    _, big_p = _big_request(tiny_model)
    big = b.submit(big_p.units)
    assert gated.entered.wait(10)
    big.cancelled = True  # the client disconnected during the first slice
    gated.gate.set()
    wait_for(lambda: b.depth() == 0 and big.future.done())
    b.stop()
    assert len(gated.calls) == 1 and gated.calls[0] < len(big_p.units)  # the other slices were never embedded
