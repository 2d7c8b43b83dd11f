"""Reranker training on tiny models: it learns the toy task, chooses its checkpoint on held-out queries, resumes,
and its output is a CrossEncoder folder that m3e and sentence-transformers load alike."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from m3e.data.records import Record, Source
from m3e.errors import InputError
from m3e.training.cross_encoder import (
    Group,
    RerankConfig,
    ranking_groups,
    scored_groups,
    split_groups,
    training_rows,
)
from tests.training.test_trainer import toy_pairs, write


def test_groups_rows_and_the_held_out_split(tiny_model):
    pairs = toy_pairs(40)
    source = Source("toy", "pair", [Record(r["query"], r["positive"]) for r in pairs])
    counts: dict = {}
    config = RerankConfig(negatives=2, rank_range=[2, 20], validation=0.2, max_validation=5, margin=2.0)
    groups = ranking_groups(source, tiny_model, config, counts)  # margin 2 turns the guard off: the random
    # tiny model's cosines all sit near 1
    assert groups and all(len(g.negatives) == 2 for g in groups)
    assert all(g.positive not in g.negatives and g.query not in g.negatives for g in groups)
    train, held = split_groups(groups, config)
    assert len(held) == 5 and not {g.query for g in train} & {g.query for g in held}
    rows = training_rows(train, config)
    assert len(rows["query"]) == 3 * len(train) and rows["label"].count(1.0) == len(train)
    listwise = training_rows(train, RerankConfig(loss="listwise", negatives=2))
    assert set(listwise) == {"query", "positive", "negative_1", "negative_2"}
    scored = Source("s", "scored", [Record("a", "b", score=0), Record("c", "d", score=5), Record("e", "f", score=2)])
    assert [g.label for g in scored_groups(scored)] == [0.0, 1.0, 0.4]
    assert training_rows([Group("a", "b", [], 0.4)], RerankConfig())["label"] == [0.4]


def test_bad_config_is_named():
    with pytest.raises(InputError, match="loss must be"):
        RerankConfig(loss="softmax").check()
    with pytest.raises(InputError, match="rank_range"):
        RerankConfig(rank_range=[5, 2]).check()


def test_finetune_cross_encoder_cli_learns_and_resumes(tmp_path, tiny_st_dir, tiny_model):
    """`m3e finetune --cross-encoder` from an embedding model: the output ranks held-out queries' positives above
    their mined negatives better than the untrained head did, loads in plain CrossEncoder with the same scores,
    and a second run with --resume continues from the last checkpoint."""
    from sentence_transformers import CrossEncoder

    from m3e import load_reranker

    pairs = toy_pairs(48)
    rows = [{**r, "negative": pairs[(i + 7) % len(pairs)]["positive"]} for i, r in enumerate(pairs)]
    data = write(tmp_path / "pairs.jsonl", rows)  # triplets: nothing to mine (the tiny model could not)
    out = tmp_path / "rr"
    script = Path(sys.executable).with_name("m3e")
    cmd = [str(script), "finetune", "--cross-encoder", "--data", str(data), "-o", str(out), "--model",
           str(tiny_st_dir), "--mine-with", str(tiny_st_dir), "--negatives", "1", "--batch-size", "8",
           "--lr", "5e-4", "--epochs", "3", "--save-every", "10", "--eval-every", "10", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "training_report.json").read_text())
    assert report["sources"]["pairs"]["validation_queries"] >= 1
    assert report["validation_after"]["validation_ndcg@10"] >= report["validation_before"]["validation_ndcg@10"]
    rr = load_reranker(str(out / "model"))
    q, docs = "今天天气很好", ["今天阳光明媚", "我喜欢吃苹果", "他在北京工作"]
    np.testing.assert_allclose(rr.score(q, docs), CrossEncoder(str(out / "model")).predict([(q, d) for d in docs]),
                               atol=1e-4)
    steps = report["steps"]
    r = subprocess.run(cmd[:cmd.index("--epochs") + 1] + ["4"] + cmd[cmd.index("--epochs") + 2:] + ["--resume"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads((out / "training_report.json").read_text())
    assert again["steps"] > steps  # continued from the checkpoint: one more epoch, not four
    assert again["steps"] <= steps * 4 // 3 + 2
    r = subprocess.run(cmd + ["--lora"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "not with --cross-encoder" in r.stderr and "Traceback" not in r.stderr


def test_a_packed_reranker_rebuilds_with_the_same_scores(tmp_path, tiny_st_dir):
    """A reranker trained from an embedding model, shipped as a low-rank difference plus its new head: the rebuilt
    folder scores as the trained one (here the changes are exactly low-rank, so the rebuild is exact)."""
    import torch
    from sentence_transformers import CrossEncoder

    from m3e.training.cross_encoder import build_from_diff, load_cross_encoder, pack_reranker

    torch.manual_seed(5)
    model = load_cross_encoder(str(tiny_st_dir), device="cpu", max_length=64)
    with torch.no_grad():
        for name, p in model[0].model.named_parameters():
            if "encoder" in name and p.dim() == 2:
                p.add_(0.05 * torch.randn(p.shape[0], 1) @ torch.randn(1, p.shape[1]))
            if "classifier" in name:
                p.normal_(0, 1)
    model.save(str(tmp_path / "trained"))
    report = pack_reranker(tmp_path / "trained", str(tiny_st_dir), tmp_path / "packed", rank=2)
    assert "classifier.weight" in report["new_tensors"]  # initialized at random: stored whole
    assert report["worst_relative_error"] < 1e-3
    build_from_diff(tmp_path / "packed", str(tiny_st_dir), tmp_path / "rebuilt")
    pairs = [("今天天气很好", "今天阳光明媚"), ("我喜欢吃苹果", "他在北京工作"), ("机器学习", "这部电影很好看")]
    np.testing.assert_allclose(CrossEncoder(str(tmp_path / "rebuilt")).predict(pairs),
                               CrossEncoder(str(tmp_path / "trained")).predict(pairs), atol=1e-4)
