"""`m3e index ...` and `m3e search` end to end in a subprocess, and the CMRC2018 ranking against the eval task."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_cli import run


def test_index_build_search_add_remove(tmp_path, tiny_st_dir, tiny_model):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("今天天气很好。我喜欢吃苹果。", encoding="utf-8")
    (docs / "b.jsonl").write_text('{"id": "m", "text": "这部电影很好看", "year": 2023}\n\n{"id": "e", "text": ""}\n',
                                  encoding="utf-8")
    (docs / "c.bin.txt").write_bytes(b"\x00\x00")
    ix = tmp_path / "ix"
    r = run("index", "build", "-i", str(docs), "-o", str(ix), "--model", str(tiny_st_dir), "--chunk-size", "8",
            "--overlap", "0")
    assert r.returncode == 0, r.stderr
    assert "skipped 1 file(s)" in r.stderr and "binary file" in r.stderr and "b.jsonl:3" in r.stderr
    assert "indexed 2 documents as 3 chunks" in r.stderr

    r = run("search", str(ix), "电影", "-k", "2", "--json")  # the index's own model by default
    assert r.returncode == 0, r.stderr
    hits = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(hits) == 2 and [h["rank"] for h in hits] == [1, 2]
    texts = ["今天天气很好。", "我喜欢吃苹果。", "这部电影很好看"]
    sims = tiny_model.encode(texts, prompt_name="passage") @ tiny_model.encode(["电影"], prompt_name="query")[0]
    assert hits[0]["text"] == texts[int(np.argmax(sims))]
    assert abs(hits[0]["score"] - float(sims.max())) < 1e-5
    movie = next(h for h in hits + [json.loads(x) for x in run("search", str(ix), "电影", "-k", "3", "--json")
                                     .stdout.splitlines()] if h["doc_id"] == "m")
    assert movie["metadata"] == {"id": "m", "year": 2023} and movie["line"] == 1

    r = run("search", str(ix), "苹果", "--hybrid")
    assert r.returncode == 0 and "bm25" in r.stdout

    (docs / "d.md").write_text("机器学习很有趣", encoding="utf-8")
    r = run("index", "add", str(ix), "-i", str(docs / "d.md"))
    assert r.returncode == 0 and "4 chunks" in r.stdout, r.stderr
    r = run("index", "remove", str(ix), "--id", "m")
    assert r.returncode == 0 and "removed 1 chunks" in r.stdout
    info = json.loads(run("index", "info", str(ix)).stdout)
    assert info["chunks"] == 3 and info["model"] == str(tiny_st_dir) and "probe" not in info


@pytest.mark.parametrize(("args", "message"), [
    (["search", "NOPE", "q"], "is not an m3e index"),
    (["index", "build", "-i", "NOPE", "-o", "OUT"], "no such file or folder"),
    (["index", "remove", "NOPE"], "say what to remove"),
    (["search", "IX", "q", "--model", "OTHER"], "gives other vectors"),
])
def test_search_user_errors(args, message, tmp_path, tiny_st_dir, tiny_model):
    from m3e.search import Index
    from tests.conftest import build_tiny_hf_model, build_tiny_st_model

    (tmp_path / "a.txt").write_text("你好", encoding="utf-8")
    Index.build([tmp_path / "a.txt"], tmp_path / "ix", tiny_model)
    other = build_tiny_st_model(tmp_path / "other", build_tiny_hf_model(tmp_path / "ohf", seed=3))
    subst = {"NOPE": str(tmp_path / "nope"), "OUT": str(tmp_path / "out"), "IX": str(tmp_path / "ix"),
             "OTHER": str(other)}
    r = run(*[subst.get(a, a) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.builtin
@pytest.mark.data
def test_cmrc2018_search_ranking_equals_the_evaluation_task(shared_data, builtin_model, tmp_path):
    """The first 80 paragraphs and their questions: `m3e search` top 10 == the retrieval task's ranking."""
    from m3e.evaluation.builtin import BUILTIN_TASKS
    from m3e.evaluation.runner import EmbeddingMemo
    from m3e.evaluation.types.retrieval import _desc_rank, rank_order
    from m3e.search import Index

    task = BUILTIN_TASKS["CMRC2018Retrieval"]
    data = task.load(shared_data)
    keep = set(data.doc_ids[:80])
    corpus = [(i, t) for i, t in zip(data.doc_ids, data.corpus, strict=True) if i in keep]
    queries = [q for q, rel in zip(data.queries, data.qrels, strict=True) if set(rel) & keep][:30]
    src = tmp_path / "cmrc.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in corpus),
                   encoding="utf-8")
    index, _ = Index.build([src], tmp_path / "ix", builtin_model, chunk_size=0)

    memo = EmbeddingMemo(builtin_model)
    q = memo.encode(queries, task.prompts["query"])
    d = memo.encode([t for _, t in corpus], task.prompts["document"])
    ids = [i for i, _ in corpus]
    id_rank = _desc_rank(ids)
    for qi, query in enumerate(queries):
        expected = [ids[j] for j in rank_order(d @ q[qi], id_rank, 10)]
        got = [h.doc_id for h in index.search(query, k=10)]
        assert got == expected, (query, got, expected)
    # and once through the command line
    r = run("search", str(tmp_path / "ix"), queries[0], "-k", "10", "--json")
    assert [json.loads(x)["doc_id"] for x in r.stdout.splitlines()] == [h.doc_id for h in index.search(queries[0], 10)]


def test_two_concurrent_index_adds_both_land(tmp_path, tiny_st_dir):
    """The update lock: two `m3e index add` processes take turns; neither overwrites the other's generation."""
    import subprocess
    import sys
    from pathlib import Path

    from m3e.search import Index

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("今天天气很好。", encoding="utf-8")
    ix = tmp_path / "ix"
    assert run("index", "build", "-i", str(docs / "a.txt"), "-o", str(ix), "--model", str(tiny_st_dir)).returncode == 0
    script = Path(sys.executable).with_name("m3e")
    procs = []
    for name in ("b", "c"):
        f = docs / f"{name}.txt"
        f.write_text(("我喜欢吃苹果。" if name == "b" else "他在北京工作。") * 30, encoding="utf-8")
        procs.append(subprocess.Popen([str(script), "index", "add", str(ix), "-i", str(f), "--model", str(tiny_st_dir)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read()
    index = Index.load(ix)
    sources = {Path(r[0]).name for r in index._db.execute("SELECT DISTINCT source FROM chunks")}
    assert sources == {"a.txt", "b.txt", "c.txt"} and index.manifest["generation"] == 3
    assert sorted(p.name for p in ix.iterdir()) == ["chunks-3.sqlite", "index.json", "index.lock",
                                                    "index.readers.lock", "vectors-3.usearch"]


def test_index_build_resume_after_kill_9(tmp_path, tiny_st_dir):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from m3e.search import Index

    src = tmp_path / "many.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": f"第{i}篇文档。今天天气很好，我喜欢吃苹果。"},
                                      ensure_ascii=False) + "\n" for i in range(30000)), encoding="utf-8")
    base = ["index", "build", "-i", str(src), "--model", str(tiny_st_dir), "--threads", "1"]
    assert run(*base, "-o", str(tmp_path / "whole")).returncode == 0
    out = tmp_path / "killed"
    script = Path(sys.executable).with_name("m3e")
    proc = subprocess.Popen([str(script), *base, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy())
    state = tmp_path / ".killed.building" / "build-state.json"
    deadline = time.time() + 120
    while not (state.is_file() and json.loads(state.read_text())["shards"] >= 1):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not out.exists()
    r = run(*base, "-o", str(out))  # the same command again continues the build
    assert r.returncode == 0, r.stderr
    assert "continuing the interrupted build" in r.stderr
    rows = "SELECT id, doc_id, chunk, text FROM chunks ORDER BY id"
    assert Index.load(out)._db.execute(rows).fetchall() == Index.load(tmp_path / "whole")._db.execute(rows).fetchall()


def test_search_rescore_reorders_the_candidates_by_the_second_model(tmp_path, tiny_st_dir, tiny_model):
    """An index built with one model, re-scored at query time by another: the candidates' order is the second
    model's cosine (query prompt vs passage prompt), the first stage's score kept beside it."""
    from tests.conftest import build_tiny_hf_model, build_tiny_st_model

    other_dir = build_tiny_st_model(tmp_path / "other", build_tiny_hf_model(tmp_path / "other_hf", seed=3))
    docs = tmp_path / "docs.jsonl"
    texts = ["今天天气很好", "我喜欢吃苹果", "这部电影很好看", "他在北京工作", "机器学习很有趣"]
    docs.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    ix = tmp_path / "ix"
    assert run("index", "build", "-i", str(docs), "-o", str(ix), "--model", str(tiny_st_dir)).returncode == 0
    r = run("search", str(ix), "天气", "-k", "3", "--rescore", str(other_dir), "--candidates", "5", "--json")
    assert r.returncode == 0, r.stderr
    hits = [json.loads(line) for line in r.stdout.splitlines()]
    from m3e import load_model

    other = load_model(str(other_dir))
    sims = other.encode(texts, prompt_name="passage") @ other.encode(["天气"], prompt_name="query")[0]
    assert [h["text"] for h in hits] == [texts[i] for i in np.argsort(-sims)[:3]]
    np.testing.assert_allclose([h["score"] for h in hits], np.sort(sims)[::-1][:3], atol=1e-5)
    first = tiny_model.encode(texts, prompt_name="passage") @ tiny_model.encode(["天气"], prompt_name="query")[0]
    assert all(abs(h["dense_score"] - first[texts.index(h["text"])]) < 1e-5 for h in hits)


def test_search_rerank_orders_the_candidates_by_the_cross_encoder(tmp_path, tiny_st_dir, tiny_reranker_dir):
    """`--rerank CROSS_ENCODER`: the first stage's candidates in the order of sentence-transformers'
    CrossEncoder.predict on (query, chunk) pairs; an embedding model named there is not mistaken for one."""
    from sentence_transformers import CrossEncoder

    docs = tmp_path / "docs.jsonl"
    texts = ["今天天气很好", "我喜欢吃苹果", "这部电影很好看", "他在北京工作", "机器学习很有趣"]
    docs.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    ix = tmp_path / "ix"
    assert run("index", "build", "-i", str(docs), "-o", str(ix), "--model", str(tiny_st_dir)).returncode == 0
    r = run("search", str(ix), "天气", "-k", "3", "--rerank", str(tiny_reranker_dir), "--candidates", "5", "--json")
    assert r.returncode == 0, r.stderr
    hits = [json.loads(line) for line in r.stdout.splitlines()]
    ref = CrossEncoder(str(tiny_reranker_dir), device="cpu").predict([("天气", t) for t in texts])
    assert [h["text"] for h in hits] == [texts[i] for i in np.argsort(-ref, kind="stable")[:3]]
    np.testing.assert_allclose([h["score"] for h in hits], np.sort(ref)[::-1][:3], atol=1e-4)
    r = run("serve", "--model", str(tiny_reranker_dir))
    assert r.returncode != 0 and "is a reranker" in r.stderr and "Traceback" not in r.stderr
