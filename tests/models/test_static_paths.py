"""A static model goes everywhere a transformer goes: bulk encode (local and Ray), the server with the real
openai client, eval, index and search (with a transformer re-scoring), similarity; and finetune refuses it."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from tests.conftest import SAMPLE
from tests.test_cli import run

TEXTS = [s for s in SAMPLE if s.strip()]


@pytest.fixture(scope="module")
def static(tiny_static_dir):
    from m3e import load_model

    return load_model(str(tiny_static_dir))


def test_bulk_encode_shards_equal_encode(tiny_static_dir, static, tmp_path):
    from m3e.bulk.shards import read_shards

    src = tmp_path / "in.txt"
    src.write_text("".join(f"{t} {i}\n" for i, t in enumerate(TEXTS * 3)), encoding="utf-8")
    r = run("encode", "-i", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_static_dir),
            "--shard-size", "5")
    assert r.returncode == 0, r.stderr
    table = read_shards(tmp_path / "out")
    got = np.array(table["embedding"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got, static.encode(table["text"].to_pylist()), atol=1e-6)


@pytest.mark.ray
def test_ray_engine_with_a_static_model(tiny_static_dir, static, tmp_path):
    pytest.importorskip("ray")
    from m3e.bulk.shards import read_shards

    src = tmp_path / "in.txt"
    src.write_text("".join(f"{t} {i}\n" for i, t in enumerate(TEXTS * 2)), encoding="utf-8")
    r = run("encode", "-i", str(src), "-o", str(tmp_path / "ray"), "--model", str(tiny_static_dir), "--engine",
            "ray", "--num-workers", "2", "--threads", "1", "--shard-size", "8")
    assert r.returncode == 0, r.stderr
    table = read_shards(tmp_path / "ray")
    got = np.array(table["embedding"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got, static.encode(table["text"].to_pylist()), atol=1e-6)


def test_served_by_the_openai_contract(tiny_static_dir, static):
    openai = pytest.importorskip("openai")
    from tests.serving.test_server import start_cli_server

    proc, url = start_cli_server(tiny_static_dir)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        resp = client.embeddings.create(model="tiny", input=TEXTS)  # base64, decoded by the client
        np.testing.assert_allclose(np.array([d.embedding for d in resp.data]), static.encode(TEXTS), atol=1e-6)
        assert resp.usage.prompt_tokens == sum(static.count_tokens(TEXTS))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_eval_index_search_and_similarity(tiny_static_dir, tiny_st_dir, static, tmp_path):
    task = tmp_path / "pairs.jsonl"
    pairs = [("今天天气很好", "今天阳光明媚", 4.0), ("我喜欢吃苹果", "他在北京工作", 0.0),
             ("这部电影很好看", "机器学习很有趣", 1.0), ("I like apples", "I like apples", 5.0)]
    task.write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}, ensure_ascii=False) + "\n"
                            for a, b, s in pairs), encoding="utf-8")
    r = run("eval", "--task-file", str(task), "-m", str(tiny_static_dir), "-o", str(tmp_path / "res"))
    assert r.returncode == 0, r.stderr
    [result] = [json.loads(p.read_text()) for p in (tmp_path / "res").glob("*/*.json")]
    from scipy.stats import spearmanr

    a, b = static.encode([p[0] for p in pairs]), static.encode([p[1] for p in pairs])
    assert result["main_score"] == pytest.approx(spearmanr(np.sum(a * b, 1), [p[2] for p in pairs]).statistic)

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in TEXTS[:8]),
                    encoding="utf-8")
    assert run("index", "build", "-i", str(docs), "-o", str(tmp_path / "ix"), "--model",
               str(tiny_static_dir)).returncode == 0
    r = run("search", str(tmp_path / "ix"), "天气", "-k", "2", "--json", "--rescore", str(tiny_st_dir))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
    r = run("similarity", "今天天气很好", "今天阳光明媚", "--model", str(tiny_static_dir))
    assert r.returncode == 0, r.stderr


def test_finetune_refuses_a_static_model(tiny_static_dir, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "今天天气很好", "positive": "今天阳光明媚"}\n' * 4, encoding="utf-8")
    r = run("finetune", "--model", str(tiny_static_dir), "--data", str(data), "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and "static model" in r.stderr and "Traceback" not in r.stderr
