"""The index against a brute-force reference (numpy over the model's own vectors), updates, crash safety."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from m3e.errors import InputError, M3EError
from m3e.search import Index
from m3e.search.bm25 import BM25, rrf, words
from tests.conftest import SAMPLE

DOCS = {
    "rivers.txt": "长江是中国最长的河流。黄河是中国第二长的河流。\n\n珠江在南方。",
    "cities.md": "# 城市\n北京是中国的首都。上海是最大的城市。He works in Beijing. I like apples.",
}


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    rows = [{"id": f"r{i}", "text": t, "n": i} for i, t in enumerate(SAMPLE)]
    (root / "sub" / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                             encoding="utf-8")
    (root / "sub" / "table.csv").write_text("id,text,lang\nc1,今天天气很好,zh\nc2,,zh\nc3,This movie is great,en\n",
                                            encoding="utf-8")
    (root / "blob.txt").write_bytes(b"\x00\x01binary\x00")
    (root / "latin1.txt").write_bytes("caf\xe9 \xff\xfe".encode("latin-1"))
    (root / "image.png").write_bytes(b"\x89PNG")
    return root


def build(corpus, tmp_path, model, **kw):
    kw.setdefault("chunk_size", 20)
    kw.setdefault("overlap", 5)
    return Index.build([corpus], tmp_path / "ix", model, **kw)


def test_build_reports_every_skip_and_keeps_offsets_and_metadata(corpus, tmp_path, tiny_model):
    index, change = build(corpus, tmp_path, tiny_model)
    report = change.report
    assert report.files == 4  # 2 text files, jsonl, csv
    shown = report.skipped_files.examples
    skipped = {w.split(" (byte")[0].split("/")[-1]: why for why, ws in shown.items() for w in ws}
    assert "binary" in skipped["blob.txt"] and "unsupported type '.png'" in skipped["image.png"]
    assert "not UTF-8 or GB18030 text" in skipped["latin1.txt"] and len(skipped) == 3
    assert report.skipped_rows == {"no text": 1}
    assert report.skipped_rows.examples == {"no text": [f"{corpus / 'sub' / 'table.csv'}:3"]}
    rows = index._db.execute("SELECT source, line, doc_id, start, end, text, metadata FROM chunks").fetchall()
    for source, line, _doc_id, start, end, text, _meta in rows:
        if line is None:  # whole files: offsets index into the file's text
            assert Path(source).read_text(encoding="utf-8")[start:end] == text
    meta = {r[2]: json.loads(r[6]) for r in rows}
    assert meta["c3"] == {"id": "c3", "lang": "en"} and meta["r0"] == {"id": "r0", "n": 0}


def test_exact_search_equals_brute_force_over_the_model(corpus, tmp_path, tiny_model):
    index, _ = build(corpus, tmp_path, tiny_model)
    ids, texts = zip(*index._db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall(), strict=True)
    docs = tiny_model.encode(list(texts), prompt_name="passage")
    for query in ["中国最长的河", "apples", "天气"]:
        q = tiny_model.encode([query], prompt_name="query")[0]
        sims = docs @ q
        order = sorted(range(len(ids)), key=lambda i: (-round(float(sims[i]), 6), ids[i]))[:5]
        hits = index.search(query, k=5, exact=True)
        assert [h.chunk_id for h in hits] == [ids[i] for i in order]
        np.testing.assert_allclose([h.score for h in hits], [sims[i] for i in order], atol=1e-5)


def test_approximate_search_recall_against_exact(tmp_path, tiny_model):
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("今天天气很好我喜欢吃苹果他在北京工作这部电影机器学习有趣")) for _ in range(12))
             + f" {i}" for i in range(600)]
    from m3e.search.documents import Document

    docs = [Document(f"/virtual/{i}", t, str(i)) for i, t in enumerate(texts)]
    index = Index.create(tmp_path / "ix", tiny_model, chunk_size=0, overlap=0, exact_below=0)
    index.add(docs)
    qv = tiny_model.encode(texts[:50], prompt_name="query")
    exact = index.dense(qv, 10, exact=True)
    approx = index.dense(qv, 10)  # exact_below=0: HNSW
    recall = np.mean([len({c for c, _ in a} & {c for c, _ in e}) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9, recall


def test_add_replaces_a_changed_file_and_remove_by_folder_and_id(corpus, tmp_path, tiny_model):
    index, _ = build(corpus, tmp_path, tiny_model)
    before = len(index)
    (corpus / "rivers.txt").write_text("只剩一句。", encoding="utf-8")
    index = Index.load(tmp_path / "ix", tiny_model)
    change = index.add([corpus / "rivers.txt"])
    index.save()
    assert change.replaced_sources == 1 and change.chunks == 1
    index = Index.load(tmp_path / "ix", tiny_model)
    texts = [r[0] for r in index._db.execute("SELECT text FROM chunks WHERE source LIKE '%rivers.txt'")]
    assert texts == ["只剩一句。"] and len(index) == before - change.removed_chunks + 1
    n_sub = index._db.execute("SELECT COUNT(*) FROM chunks WHERE source LIKE '%/sub/%'").fetchone()[0]
    assert index.remove(sources=[corpus / "sub"]).removed_chunks == n_sub
    assert index.remove(doc_ids=[str(corpus / "cities.md")]).removed_chunks > 0
    index.save()
    index = Index.load(tmp_path / "ix", tiny_model)
    assert [r[0] for r in index._db.execute("SELECT DISTINCT source FROM chunks")] == [str(corpus / "rivers.txt")]
    assert all(h.source.endswith("rivers.txt") for h in index.search("北京", k=3))
    files = sorted(p.name for p in (tmp_path / "ix").iterdir())
    assert files == ["chunks-3.sqlite", "index.json", "index.readers.lock", "vectors-3.usearch"]


def test_interrupted_build_leaves_no_index_and_resumes_from_its_last_shard(corpus, tmp_path, tiny_model, monkeypatch):
    whole, _ = build(corpus, tmp_path / "a", tiny_model, shard_size=4)
    real_encode = tiny_model.encode
    calls = {"n": 0}

    class Dying:  # the model stops answering at its third shard
        def __getattr__(self, item):
            return getattr(tiny_model, item)

        def encode(self, texts, **kw):
            if kw.get("prompt") == "passage: " and len(texts) >= 4:
                calls["n"] += 1
                if calls["n"] == 3:
                    raise KeyboardInterrupt
            return real_encode(texts, **kw)

    with pytest.raises(KeyboardInterrupt):
        build(corpus, tmp_path / "b", Dying(), shard_size=4)
    assert not (tmp_path / "b" / "ix").exists()  # no index that looks complete
    work = tmp_path / "b" / ".ix.building"
    assert len(list(work.glob("build-part-*.npz"))) == 2
    said = []
    resumed, change = build(corpus, tmp_path / "b", tiny_model, shard_size=4, log=said.append)  # the plain rerun
    assert said and "continuing the interrupted build" in said[0]
    assert not work.exists() and change.chunks < len(whole)  # only what the first try had not finished
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["ix"]  # no build folder, no lock file
    rows = "SELECT id, source, chunk, start, end, text FROM chunks ORDER BY id"
    assert resumed._db.execute(rows).fetchall() == whole._db.execute(rows).fetchall()
    q = tiny_model.encode(["北京"], prompt_name="query")
    assert [h[0] for h in resumed.dense(q, 10, exact=True)[0]] == [h[0] for h in whole.dense(q, 10, exact=True)[0]]
    assert sorted(p.name for p in (tmp_path / "b" / "ix").iterdir()) == ["chunks-1.sqlite", "index.json",
                                                                         "index.readers.lock", "vectors-1.usearch"]


def test_an_interrupted_build_of_other_settings_starts_over_and_two_builds_at_once_are_refused(
        corpus, tmp_path, tiny_model):
    from m3e.search.index import _build_lock

    work = tmp_path / ".ix.building"
    work.mkdir()
    (work / "chunks-1.sqlite").write_bytes(b"left by a build killed before its first shard")
    said = []
    index, _ = build(corpus, tmp_path, tiny_model, log=said.append)
    assert "removed what an interrupted build" in said[0] and not work.exists() and len(index) > 0
    with _build_lock(tmp_path / "ix2"), pytest.raises(InputError, match="being built by another process"):
        Index.build([corpus], tmp_path / "ix2", tiny_model)
    assert not (tmp_path / ".ix2.build.lock").exists()


def test_killed_update_keeps_the_old_index(corpus, tmp_path, tiny_model, monkeypatch):
    index, _ = build(corpus, tmp_path, tiny_model)
    n = len(index)
    index = Index.load(tmp_path / "ix", tiny_model)
    index.remove(sources=[corpus / "sub"])
    import m3e.utils.atomic as atomic_mod

    real_replace = atomic_mod.os.replace

    def die_before_manifest(src, dst):
        if str(dst).endswith("index.json"):
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_mod.os, "replace", die_before_manifest)
    with pytest.raises(KeyboardInterrupt):
        index.save()
    monkeypatch.undo()
    again = Index.load(tmp_path / "ix", tiny_model)
    assert len(again) == n and again.manifest["generation"] == 1
    again.add([corpus / "rivers.txt"])
    again.save()  # the leftover generation-2 files are overwritten, not trusted
    assert Index.load(tmp_path / "ix", tiny_model).manifest["generation"] == 2


def test_other_models_queries_are_refused(corpus, tmp_path, tiny_model, tiny_hf_dir):
    from m3e import load_model
    from tests.conftest import build_tiny_hf_model, build_tiny_st_model

    build(corpus, tmp_path, tiny_model)
    other_hf = build_tiny_hf_model(tmp_path / "other_hf", seed=1)
    other = load_model(str(build_tiny_st_model(tmp_path / "other", other_hf)))
    with pytest.raises(M3EError, match="gives other vectors"):
        Index.load(tmp_path / "ix", other)


def test_bad_folders_and_queries(tmp_path, corpus, tiny_model):
    with pytest.raises(InputError, match="not an m3e index"):
        Index.load(tmp_path)
    (tmp_path / "ix").mkdir()
    (tmp_path / "ix" / "x").write_text("x")
    with pytest.raises(InputError, match="already exists"):
        build(corpus, tmp_path, tiny_model)
    with pytest.raises(InputError, match="no such file or folder"):
        Index.build([tmp_path / "missing"], tmp_path / "ix2", tiny_model)
    index, _ = Index.build([corpus / "rivers.txt"], tmp_path / "ix3", tiny_model)
    with pytest.raises(InputError, match="query is empty"):
        index.search("  ")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:1: no 'text' field"):
        Index.build([bad], tmp_path / "ix4", tiny_model)


def test_bm25_and_rrf_against_naive_reference():
    texts = ["苹果公司发布了新款手机", "今天股市大跌", "北京是中国的首都", "手机和电脑都涨价了", "I like apples"]
    bm = BM25(list(range(10, 15)), [words(t) for t in texts])
    got = bm.top("手机", 5)
    assert [c for c, _ in got] == [10, 13] or [c for c, _ in got] == [13, 10]
    assert bm.top("apples", 5)[0][0] == 14 and bm.top("火星", 5) == []
    # RRF: naive sum of 1/(60 + rank)
    a, b = [1, 2, 3], [3, 4, 1]
    naive = {}
    for ranking in (a, b):
        for r, x in enumerate(ranking, 1):
            naive[x] = naive.get(x, 0) + 1 / (60 + r)
    assert rrf([a, b]) == sorted(naive.items(), key=lambda kv: (-kv[1], kv[0]))


def test_hybrid_search_brings_the_keyword_match(corpus, tmp_path, tiny_model):
    index, _ = build(corpus, tmp_path, tiny_model)
    hits = index.search("珠江", k=3, hybrid=True)
    assert "珠江" in hits[0].text and hits[0].bm25_score > 0
    # the words are kept in SQLite once computed
    db = sqlite3.connect(tmp_path / "ix" / "chunks-1.sqlite")
    assert db.execute("SELECT COUNT(*) FROM chunks WHERE words IS NULL").fetchone()[0] == 0


UPDATER = r"""
import sys
from pathlib import Path
from m3e import load_model
from m3e.search.index import Index
from m3e.search.documents import Document

folder, model, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
embedder = load_model(model)
for i in range(rounds):
    with Index.open_for_update(folder, embedder) as index:
        index.add([Document(text=f"第{i}次更新：今天天气很好。", source=f"u{i}", doc_id=f"u{i}")])
print("done", flush=True)
"""


def test_readers_never_see_an_empty_or_missing_generation_while_another_process_updates(corpus, tmp_path,
                                                                                          tiny_st_dir, tiny_model):
    """A reader loading and searching in a loop while another process commits 50 updates: every load finds its
    generation's files (read-only SQLite, shared readers' lock) and every search answers."""
    import subprocess
    import sys

    build(corpus, tmp_path, tiny_model)
    proc = subprocess.Popen([sys.executable, "-c", UPDATER, str(tmp_path / "ix"), str(tiny_st_dir), "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    loads, generations = 0, set()
    while proc.poll() is None or loads < 5:
        index = Index.load(tmp_path / "ix", tiny_model)
        hits = index.search("今天天气", k=3)
        count = index._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        assert hits and count == index.manifest["chunks"], (index.manifest["generation"], count)
        generations.add(index.manifest["generation"])
        index.close()
        loads += 1
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "done" in out, err
    assert len(generations) > 1  # the reader really ran across updates
    final = Index.load(tmp_path / "ix", tiny_model)
    assert final._db.execute("SELECT COUNT(*) FROM chunks WHERE source LIKE 'u%'").fetchone()[0] == 50
