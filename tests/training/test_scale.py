"""Training data at scale: the Arrow cache equals the in-memory reader, `m3e data prepare`, resume refused when
the data or plan changed, and kills during prepare, checkpoint and export leave a usable previous state."""

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

from m3e.data.prepared import prepare_source
from m3e.data.records import read_source
from tests.test_cli import run
from tests.training.test_trainer import toy_pairs, write


def _cli(*args):
    return [str(Path(sys.executable).with_name("m3e")), *args]


def test_arrow_source_equals_the_in_memory_source(tmp_path):
    rows = [{"query": "q1", "pos": ["p1", "p2"], "neg": ["n1", "", "n1", "n2"]}, {"query": "", "pos": ["p"]},
            {"query": "q3", "pos": "p3", "neg": "n3"}, {"query": "q4", "pos": ["q4"], "neg": []}]
    f = write(tmp_path / "bge.jsonl", rows)
    mem, arrow = read_source(f, max_negatives=1), prepare_source(f, tmp_path / "cache", max_negatives=1)
    assert arrow.kind == mem.kind == "triplet" and len(arrow) == len(mem) == 3
    assert arrow.batch(range(3)) == mem.records
    assert arrow.skipped == mem.skipped and arrow.skipped.examples == mem.skipped.examples
    np.testing.assert_array_equal(np.asarray(arrow.hashes())[:, :3], mem.hashes()[:, :3])
    scored = tmp_path / "s.tsv"
    scored.write_text("甲\t乙\t1\n丙\t丁\t0\n戊\t己\t0.5\n", encoding="utf-8")
    opts = {"format": "tsv", "columns": ["sentence1", "sentence2", "label"]}
    a, m = prepare_source(scored, tmp_path / "cache", **opts), read_source(scored, **opts)
    assert a.kind == "scored" and a.batch([2, 0]) == [m.records[2], m.records[0]]
    again = prepare_source(f, tmp_path / "cache", max_negatives=1)  # the same file and options: the same entry
    assert again.key == arrow.key and len(list((tmp_path / "cache").glob("bge-*"))) == 1
    other = prepare_source(f, tmp_path / "cache")  # another option: another entry
    assert other.key != arrow.key and other.batch([0])[0].negatives == ["n1", "n2"]


def test_sample_and_overlap_filter_on_arrow_equal_in_memory(tmp_path):
    from m3e.data.overlap import filter_sources

    f = write(tmp_path / "pairs.jsonl", toy_pairs(48))
    mem, arrow = read_source(f), prepare_source(f, tmp_path / "cache")
    mem.sample(30)
    arrow.sample(30)
    assert arrow.records == mem.records
    banned = {mem.records[3].anchor + "。", mem.records[7].positive.upper()}  # equal up to punctuation and case
    assert filter_sources([mem], banned) == filter_sources([arrow], banned)
    assert arrow.records == mem.records and len(arrow) == 28


def test_data_prepare_cli_and_finetune_on_the_prepared_folder(tiny_st_dir, tmp_path):
    rows = toy_pairs(40) + [{"query": "", "positive": "x"}]
    src = write(tmp_path / "pairs.jsonl", rows)
    r = run("data", "prepare", str(src), "-o", str(tmp_path / "prep"))
    assert r.returncode == 0, r.stderr
    assert "pairs: pair records from columns query, positive" in r.stdout and "first at row" in r.stdout
    assert f"{len(rows) - 1} records in" in r.stdout.splitlines()[-1]
    r = run("finetune", "--model", str(tiny_st_dir), "--data", str(tmp_path / "prep"), "-o", str(tmp_path / "out"),
            "--batch-size", "4", "--max-steps", "2", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    state = json.loads((tmp_path / "out" / "training_state.json").read_text())
    assert state["sources"][0]["records"] == len(rows) - 1 and state["steps"] == 2
    assert set(state["left_over"]["0"]) == {"pairs"}


def test_resume_refuses_changed_batch_size_or_data(tiny_st_dir, tmp_path):
    data = write(tmp_path / "toy.jsonl", toy_pairs(48))
    common = ["finetune", "--model", str(tiny_st_dir), "--data", str(data), "-o", str(tmp_path / "out"),
              "--device", "cpu", "--save-every", "1", "--epochs", "2"]
    r = run(*common, "--batch-size", "4", "--max-steps", "2")
    assert r.returncode == 0, r.stderr
    r = run(*common, "--batch-size", "8", "--resume")
    assert r.returncode == 2 and "cannot resume" in r.stderr and "batch_size: 4 then, 8 now" in r.stderr
    write(data, toy_pairs(48)[:-3])  # the same file, other content (a touched file with the same content resumes)
    r = run(*common, "--batch-size", "4", "--resume")
    assert r.returncode == 2 and "source toy: its data (file or selection) changed" in r.stderr
    assert "Traceback" not in r.stderr


def test_resume_fingerprint_is_content_not_path_or_mtime(tmp_path):
    """A data folder copied elsewhere or re-mounted with new mtimes gets a new cache entry but the same
    fingerprint (a long run resumes); another score or another selection does not."""
    import shutil

    from m3e.training.plan import source_fingerprint

    scored = tmp_path / "a" / "s.tsv"
    scored.parent.mkdir()
    scored.write_text("甲\t乙\t1\n丙\t丁\t0\n戊\t己\t0.5\n", encoding="utf-8")
    opts = {"format": "tsv", "columns": ["sentence1", "sentence2", "label"]}
    first = prepare_source(scored, tmp_path / "cache", **opts)
    copy = tmp_path / "b" / "s.tsv"
    copy.parent.mkdir()
    shutil.copy(scored, copy)
    os.utime(copy, ns=(1, 1))
    moved = prepare_source(copy, tmp_path / "cache", **opts)
    assert moved.key != first.key and source_fingerprint(moved) == source_fingerprint(first)
    assert source_fingerprint(read_source(scored, **opts)) == source_fingerprint(read_source(copy, **opts))
    copy.write_text("甲\t乙\t1\n丙\t丁\t0\n戊\t己\t0.25\n", encoding="utf-8")  # one score edited
    assert source_fingerprint(prepare_source(copy, tmp_path / "cache", **opts)) != source_fingerprint(first)
    first.sample(2)
    assert source_fingerprint(first) != source_fingerprint(moved)


def test_eval_options_are_checked_before_training(tiny_st_dir, tmp_path):
    data = write(tmp_path / "toy.jsonl", toy_pairs(16))
    r = run("finetune", "--model", str(tiny_st_dir), "--data", str(data), "-o", str(tmp_path / "o"),
            "--eval-tasks", "STSB", "--data-dir", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "evaluation data folder" in r.stderr and not (tmp_path / "o").exists()


def test_kill_9_during_prepare_leaves_no_half_cache(tmp_path):
    big = tmp_path / "big.jsonl"
    with open(big, "w", encoding="utf-8") as fh:
        for i in range(400_000):
            fh.write(json.dumps({"query": f"问题{i}", "positive": f"答案{i}"}, ensure_ascii=False) + "\n")
    out = tmp_path / "prep"
    proc = subprocess.Popen(_cli("data", "prepare", str(big), "-o", str(out)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 120
    while not list(out.glob(".big-*.tmp")):  # the entry is being written
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not [p for p in out.glob("big-*") if (p / "meta.json").is_file()]  # nothing that looks finished
    r = run("data", "prepare", str(big), "-o", str(out))
    assert r.returncode == 0, r.stderr
    source = prepare_source(big, out)
    assert len(source) == 400_000 and source.batch([399_999])[0].anchor == "问题399999"


def test_killed_checkpoint_and_export_keep_the_previous_ones(tiny_st_dir, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from m3e import load_model
    from m3e.training import FineTuner, TrainConfig
    from m3e.training import checkpoint as ckpt

    data = write(tmp_path / "toy.jsonl", toy_pairs(48))
    out = tmp_path / "out"
    config = dict(output=str(out), batch_size=4, save_every=2, progress=False, dropout=0.0)
    FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(TrainConfig(max_steps=3, **config))
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    model_files = {p.name: p.read_bytes() for p in (out / "model").iterdir() if p.is_file()}
    real_save = ckpt.save_file

    def dies_in_the_middle(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt  # after the weights, before the optimizer state and the pointer

    monkeypatch.setattr(ckpt, "save_file", dies_in_the_middle)
    with pytest.raises(KeyboardInterrupt):
        FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
            TrainConfig(max_steps=5, resume=True, **config))
    monkeypatch.undo()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # no half checkpoint left
    real_st_save = SentenceTransformer.save

    def export_dies(self, path, *args, **kwargs):
        real_st_save(self, path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(SentenceTransformer, "save", export_dies)
    with pytest.raises(KeyboardInterrupt):
        FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
            TrainConfig(max_steps=5, resume=True, **config))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (out / "model").iterdir() if p.is_file()} == model_files
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folders left behind
    resumed = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
        TrainConfig(max_steps=5, resume=True, **config))
    assert json.loads((resumed / "training_state.json").read_text())["steps"] == 5
    assert load_model(str(out / "model"), device="cpu").encode("你好").shape == (32,)
