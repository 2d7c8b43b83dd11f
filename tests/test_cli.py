"""End-to-end through the installed `m3e` command, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    script = Path(sys.executable).with_name("m3e")  # the installed console script
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "m3e.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_encode_to_npy_and_jsonl_matches_api(tiny_st_dir, tiny_model, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "今天天气很好"}\n{"text": "I like apples"}\n', encoding="utf-8")
    out = tmp_path / "v.npy"
    r = run("encode", "-i", str(src), "-o", str(out), "--model", str(tiny_st_dir))
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(out), tiny_model.encode(["今天天气很好", "I like apples"]), atol=1e-6)
    out2 = tmp_path / "v.jsonl"
    r = run("encode", "你好", "--prompt-name", "query", "-o", str(out2), "--model", str(tiny_st_dir))
    assert r.returncode == 0, r.stderr
    row = json.loads(out2.read_text(encoding="utf-8"))
    np.testing.assert_allclose(row["embedding"], tiny_model.encode("你好", prompt_name="query"), atol=1e-6)


def test_encode_reports_truncation(tiny_st_dir):
    r = run("encode", "短", "长文本" * 40, "--model", str(tiny_st_dir))
    assert r.returncode == 0
    assert "truncated 1 of 2 texts at 64 tokens (text 1)" in r.stderr
    assert len(r.stdout.strip().splitlines()) == 2


@pytest.mark.parametrize(("args", "message"), [
    (["encode"], "give texts as arguments or --input"),
    (["encode", "x", "--model", "no-such-model"], "Unknown model 'no-such-model'"),
    (["encode", "x", "-o", "out.txt"], "for a few texts use -o FILE.npy, -o FILE.jsonl or stdout"),
    (["encode", "--input", "/no/such/file.txt"], "/no/such/file.txt: no such file or folder"),
    (["encode", "x", "", "--model", "TINY"], "item 1 is an empty string"),
    (["encode", "x", "--truncate", "bad", "--model", "TINY"], "'bad' is not one of"),
    (["similarity", "one", "--model", "TINY"], "at least two texts"),
    (["finetune", "--data", "nope.jsonl", "-o", "out", "--matryoshka", "384,x"], "--matryoshka takes dimensions"),
])
def test_user_errors_are_one_line_no_traceback(args, message, tiny_st_dir, tmp_path):
    args = [str(tiny_st_dir) if a == "TINY" else a for a in args]
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


def test_bad_output_leaves_nothing_behind(tiny_st_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("好\n\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    r = run("encode", "-i", str(src), "-o", str(out), "--model", str(tiny_st_dir))
    assert r.returncode == 2 and "in.txt:2: empty line" in r.stderr
    assert list(tmp_path.iterdir()) == [src]


def test_similarity_json(tiny_st_dir, tiny_model):
    r = run("similarity", "今天天气很好", "今天阳光明媚", "I like apples", "--json", "--model", str(tiny_st_dir))
    assert r.returncode == 0, r.stderr
    got = np.array(json.loads(r.stdout)["similarity"])
    v = tiny_model.encode(["今天天气很好", "今天阳光明媚", "I like apples"], prompt_name="query")
    np.testing.assert_allclose(got, v @ v.T, atol=1e-5)


@pytest.mark.builtin
def test_demo_and_models_on_builtin(builtin_model):
    from m3e.models.builtin import DEFAULT_MODEL

    r = run("demo")
    assert r.returncode == 0, r.stderr
    assert DEFAULT_MODEL == "m3e-small-zh" and DEFAULT_MODEL in r.stdout and "semantic search" in r.stdout
    # The panda question finds the panda passage first.
    after = r.stdout.split("大熊猫吃什么", 1)[1]
    assert "[panda]" in after.splitlines()[1]
    r = run("models")
    assert r.returncode == 0 and "multilingual-e5-small-q4" in r.stdout and "default" in r.stdout


def test_first_use_mistakes_get_one_clear_line(tiny_st_dir, tmp_path):
    """An empty API key refuses to start; bad threads and devices are named; --resume on a first run starts it."""
    r = run("serve", "--model", str(tiny_st_dir), "--api-key", "  ")
    assert r.returncode == 2 and "--api-key (or $M3E_API_KEY) is empty" in r.stderr and "Traceback" not in r.stderr
    r = run("serve", "--model", str(tiny_st_dir), env_extra={"M3E_API_KEY": ""})
    assert r.returncode == 2 and "is empty" in r.stderr
    r = run("encode", "你好", "--model", str(tiny_st_dir), "--threads", "-2")
    assert r.returncode == 2 and "--threads" in r.stderr
    import torch

    if not torch.cuda.is_available():
        r = run("encode", "你好", "--model", str(tiny_st_dir), "--device", "cuda")
        assert r.returncode == 2 and "no CUDA GPU is usable here" in r.stderr and "Traceback" not in r.stderr
    r = run("encode", "你好", "--model", str(tiny_st_dir), "--device", "gpu0")
    assert r.returncode == 2 and "unknown device 'gpu0'" in r.stderr
    src = tmp_path / "in.txt"
    src.write_text("今天天气很好\n我喜欢吃苹果\n", encoding="utf-8")
    r = run("encode", "-i", str(src), "-o", str(tmp_path / "shards"), "--resume", "--model", str(tiny_st_dir))
    assert r.returncode == 0, r.stderr
    assert "encode: 38.0/38.0 B (100.0%)" in r.stderr  # progress lines also when stderr is not a terminal
    r = run("encode", "-i", str(src), "-o", str(tmp_path / "shards"), "--resume", "--model", str(tiny_st_dir))
    assert r.returncode == 0, r.stderr  # the finished run resumes to nothing left


def test_inputs_and_outputs_are_checked_before_the_model_loads(tmp_path):
    """With a model that does not exist, the input or output mistake is what gets reported: it is checked first.
    Files of other types in an input folder are named, not silently left out."""
    src = tmp_path / "in.txt"
    src.write_text("今天天气很好\n", encoding="utf-8")
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    (tmp_path / "dir.npy").mkdir()
    table = tmp_path / "table.csv"
    table.write_text("body\n今天天气很好\n", encoding="utf-8")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"body": "今天天气很好"}\n', encoding="utf-8")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "index.json").write_text("{}", encoding="utf-8")
    ro.chmod(0o555)
    cases = [
        (["encode", "-i", str(src), "-o", str(tmp_path / "a_file" / "sub")], "a_file is a file"),
        (["encode", "-i", str(src), "-o", str(tmp_path / "a_file" / "v.npy")], "a_file is a file"),
        (["encode", "-i", str(src), "-o", str(tmp_path / "a_file")], "exists and is a file, not a folder"),
        (["encode", "-i", str(src), "-o", str(tmp_path / "dir.npy")], "is a folder; give a file name"),
        (["index", "build", "-i", str(src), "-o", str(tmp_path / "a_file")], "exists and is a file, not a folder"),
        (["index", "build", "-i", str(src), "-o", str(tmp_path / "ro")], "already exists; update it with"),
        (["encode", "-i", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "v.npy")], "nope.txt: no such file"),
        (["encode", "-i", str(table), "-o", str(tmp_path / "shards")], "no column 'text' in the header"),
        (["encode", "-i", str(rows), "-o", str(tmp_path / "v.npy")], "rows.jsonl:1: no field 'text' (fields: body)"),
    ]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((["encode", "-i", str(src), "-o", str(ro / "v.npy")], "no permission"))
    for args, message in cases:
        r = run(*args, "--model", str(tmp_path / "no-such-model"))
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("你好\n", encoding="utf-8")
    (folder / "scan.pdf").write_bytes(b"%PDF")
    (folder / "photo.png").write_bytes(b"\x89PNG")
    r = run("encode", "-i", str(folder), "-o", str(tmp_path / "v.npy"), "--model", str(tmp_path / "no-such-model"))
    assert "ignored 2 file(s)" in r.stderr and ".pdf: 1" in r.stderr and ".png: 1" in r.stderr


def test_help_and_argument_errors_import_no_model_library():
    """`m3e --help` and a mistyped option answer without importing torch, transformers or sentence-transformers."""
    probe = ("import sys\nfrom typer.testing import CliRunner\nfrom m3e.cli import app\n"
             "for args in (['--help'], ['encode', '--help'], ['encode', 'x', '--threads', '-2'],"
             " ['eval', '--no-such-option']):\n"
             "    CliRunner().invoke(app, args)\n"
             "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
