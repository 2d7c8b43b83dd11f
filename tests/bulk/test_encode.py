"""Bulk encode: streamed shards equal Embedder.encode, resume after kill -9, bad rows, the Ray engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from m3e.bulk.job import EncodeOptions, encode_corpus
from m3e.bulk.shards import MANIFEST, read_shards
from m3e.errors import InputError
from tests.conftest import SAMPLE
from tests.test_cli import run

TEXTS = [t for t in SAMPLE if t.strip()]


def corpus(folder: Path, n: int = 60) -> list[tuple[str, str]]:
    """txt + jsonl + csv + parquet files; returns (expected id, text) in reading order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(n)]
    q = n // 4
    (folder / "a.txt").write_text("".join(t + "\n" for t in rows[:q]), encoding="utf-8")
    (folder / "b.jsonl").write_text("".join(json.dumps({"text": t, "n": i}, ensure_ascii=False) + "\n"
                                            for i, t in enumerate(rows[q:2 * q])), encoding="utf-8")
    (folder / "c.csv").write_text("n,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(rows[2 * q:3 * q])),
                                  encoding="utf-8")
    pq.write_table(pa.table({"text": rows[3 * q:]}), folder / "d.parquet")
    return ([(f"{folder / 'a.txt'}:{i + 1}", t) for i, t in enumerate(rows[:q])]
            + [(f"{folder / 'b.jsonl'}:{i + 1}", t) for i, t in enumerate(rows[q:2 * q])]
            + [(f"{folder / 'c.csv'}:{i + 2}", t) for i, t in enumerate(rows[2 * q:3 * q])]
            + [(f"{folder / 'd.parquet'}:{i + 1}", t) for i, t in enumerate(rows[3 * q:])])


def test_shards_equal_embedder_encode(tiny_model, tmp_path):
    want = corpus(tmp_path / "in")
    options = EncodeOptions(shard_size=7, chunk=3, prompt_name="passage")  # shards and chunks cut through files
    summary = encode_corpus(tiny_model, [tmp_path / "in"], tmp_path / "out", options)
    table = read_shards(tmp_path / "out")
    assert table.column_names == ["id", "text", "embedding"]
    assert table["id"].to_pylist() == [i for i, _ in want]
    assert table["text"].to_pylist() == [t for _, t in want]
    got = np.array(table["embedding"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got, tiny_model.encode([t for _, t in want], prompt_name="passage"), atol=1e-6)
    assert summary.texts == len(want) and summary.shards == -(-len(want) // 7) and summary.resumed == 0
    counts = tiny_model.count_tokens([t for _, t in want], prompt="passage: ")
    assert summary.tokens == sum(min(n, tiny_model.max_length) for n in counts)  # after truncation
    assert summary.truncated == sum(n > tiny_model.max_length for n in counts) > 0
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["complete"] and manifest["rows"] == len(want)


def test_float16_no_text_and_id_column(tiny_model, tmp_path):
    f = tmp_path / "docs.jsonl"
    f.write_text("".join(json.dumps({"doc": f"d{i}", "text": t}, ensure_ascii=False) + "\n"
                         for i, t in enumerate(TEXTS)), encoding="utf-8")
    encode_corpus(tiny_model, [f], tmp_path / "out", EncodeOptions(id_column="doc", with_text=False,
                                                                   dtype="float16"))
    table = read_shards(tmp_path / "out")
    assert table.column_names == ["id", "embedding"] and str(table.schema.field("embedding").type.value_type) == \
        "halffloat"
    assert table["id"].to_pylist() == [f"d{i}" for i in range(len(TEXTS))]
    np.testing.assert_allclose(np.array(table["embedding"].to_pylist(), dtype=np.float32),
                               tiny_model.encode(TEXTS), atol=2e-3)


def test_bad_rows_are_named_or_skipped_and_counted(tiny_model, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(b'{"text": "ok one"}\n{"body": "no text field"}\n\n{"text": "\xff\xfe broken"}\n'
                  b'{"text": "   "}\n{"text": 5}\nnot json\n{"text": "ok two"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: no field 'text'"):
        encode_corpus(tiny_model, [f], tmp_path / "out1")
    summary = encode_corpus(tiny_model, [f], tmp_path / "out2", EncodeOptions(skip_bad=True))
    assert read_shards(tmp_path / "out2")["text"].to_pylist() == ["ok one", "ok two"]
    assert summary.skipped == {"no field 'text'": 1, "empty line": 1, "not valid UTF-8": 1, "empty text": 1,
                               "field 'text' is int, expected a string": 1, "invalid JSON": 1}
    assert summary.skip_report.examples["not valid UTF-8"] == [f"{f}:4"]
    assert json.loads((tmp_path / "out2" / MANIFEST).read_text())["skipped"] == summary.skipped


def test_resume_refuses_a_changed_job(tiny_model, tmp_path):
    corpus(tmp_path / "in", 20)
    encode_corpus(tiny_model, [tmp_path / "in"], tmp_path / "out", EncodeOptions(shard_size=5))
    with pytest.raises(InputError, match="not empty.*--resume"):
        encode_corpus(tiny_model, [tmp_path / "in"], tmp_path / "out", EncodeOptions(shard_size=5))
    with pytest.raises(InputError, match="cannot resume, the job changed.*shard_size: 5 then, 6 now"):
        encode_corpus(tiny_model, [tmp_path / "in"], tmp_path / "out", EncodeOptions(shard_size=6), resume=True)
    again = encode_corpus(tiny_model, [tmp_path / "in"], tmp_path / "out", EncodeOptions(shard_size=5), resume=True)
    assert again.texts == 0 and again.shards == 4  # already complete: nothing to do


def test_kill_9_then_resume_equals_an_uninterrupted_run(tiny_st_dir, tmp_path):
    src = tmp_path / "big.txt"
    src.write_text("".join(f"{TEXTS[i % len(TEXTS)]} 第{i}行\n" for i in range(6000)), encoding="utf-8")
    base = ["encode", "-i", str(src), "--model", str(tiny_st_dir), "--shard-size", "200", "--threads", "1"]
    r = run(*base, "-o", str(tmp_path / "whole"))
    assert r.returncode == 0, r.stderr
    script = Path(sys.executable).with_name("m3e")
    out = tmp_path / "killed"
    proc = subprocess.Popen([str(script), *base, "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 120
    while not _shards_listed(out) >= 3:  # wait for a run in the middle of its work
        assert proc.poll() is None, "finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert _shards_listed(out) < 30
    r = run(*base, "-o", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert "continuing after" in r.stderr
    a, b = read_shards(tmp_path / "whole"), read_shards(out)
    assert a.equals(b)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "whole").iterdir())


def _shards_listed(folder: Path) -> int:
    try:
        return len(json.loads((folder / MANIFEST).read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


def test_cli_sharded_output_and_summary(tiny_st_dir, tmp_path):
    want = corpus(tmp_path / "in", 24)
    r = run("encode", "-i", str(tmp_path / "in" / "*.txt"), "-i", str(tmp_path / "in" / "b.jsonl"),
            "-o", str(tmp_path / "out"), "--model", str(tiny_st_dir))
    assert r.returncode == 0, r.stderr
    assert "encoded 12 texts" in r.stderr and "0 truncated" in r.stderr and "(1 shards)" in r.stderr
    assert read_shards(tmp_path / "out")["id"].to_pylist() == [i for i, _ in want[:12]]


@pytest.mark.ray
def test_ray_engine_equals_the_single_process_path(tiny_st_dir, tiny_model, tmp_path):
    pytest.importorskip("ray")
    want = corpus(tmp_path / "in", 40)
    r = run("encode", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_st_dir),
            "--engine", "ray", "--num-workers", "2", "--threads", "1", "--shard-size", "8")
    assert r.returncode == 0, r.stderr
    table = read_shards(tmp_path / "out")
    got = dict(zip(table["id"].to_pylist(), np.array(table["embedding"].to_pylist(), dtype=np.float32),
                   strict=True))
    assert set(got) == {i for i, _ in want}
    ref = tiny_model.encode([t for _, t in want])
    for (row_id, _), vec in zip(want, ref, strict=True):
        np.testing.assert_allclose(got[row_id], vec, atol=1e-5)
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["rows"] == len(want)


def test_ray_address_pointing_to_nothing_fails_fast(tiny_st_dir, tmp_path):
    pytest.importorskip("ray")
    corpus(tmp_path / "in", 4)
    start = time.time()
    r = run("encode", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_st_dir),
            "--engine", "ray", "--address", "127.0.0.1:9")
    assert r.returncode == 2 and "no Ray cluster answers there" in r.stderr and "Traceback" not in r.stderr
    assert time.time() - start < 60


def test_resume_decisions_follow_content_not_times(tiny_model, tmp_path):
    """A file edited in place with the same size and time is new work; the same bytes with a new time are not."""
    import os

    from m3e.bulk.job import EncodeOptions, job_description

    f = tmp_path / "c.txt"
    f.write_text("今天天气很好\n我喜欢吃苹果\n", encoding="utf-8")
    first = job_description(tiny_model, [f], EncodeOptions())
    os.utime(f, ns=(1, 1))
    assert job_description(tiny_model, [f], EncodeOptions()) == first  # touched (or copied back): same job
    stat = f.stat()
    f.write_text("今天天气很坏\n我喜欢吃苹果\n", encoding="utf-8")  # same length in bytes
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert f.stat().st_size == stat.st_size and f.stat().st_mtime_ns == stat.st_mtime_ns
    assert job_description(tiny_model, [f], EncodeOptions()) != first
