"""Custom task files: type detection, every format, bad input named by file and line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from m3e.errors import InputError
from m3e.evaluation.runner import evaluate
from m3e.evaluation.task_files import task_from_file


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(("rows", "expected_type"), [
    ([{"sentence1": "a", "sentence2": "b", "score": 3.5}], "STS"),
    ([{"sentence1": "a", "sentence2": "b", "label": 1}], "PairClassification"),
    ([{"source": "你好", "target": "hello"}], "BitextMining"),
    ([{"query": "q", "pos": ["p"], "neg": ["n"]}], "Reranking"),
    ([{"query": "q", "pos": "p"}], "Retrieval"),
    ([{"text": "t", "cluster": "x"}], "Clustering"),
    ([{"text": "t", "label": "x", "split": "train"}], "Classification"),
])
def test_type_detection(tmp_path, rows, expected_type):
    assert task_from_file(write_jsonl(tmp_path / "t.jsonl", rows)).type == expected_type


def test_undetectable_and_bad_rows(tmp_path):
    with pytest.raises(InputError, match="cannot tell the task type from fields"):
        task_from_file(write_jsonl(tmp_path / "x.jsonl", [{"foo": 1}]))
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "a", "score": 2}\n')
    with pytest.raises(InputError, match=r"b.jsonl:2: missing field 'sentence2'"):
        task_from_file(bad)
    bad.write_text('{"sentence1": "a", "sentence2": "b", "label": 2}\n')
    with pytest.raises(InputError, match=r"b.jsonl:1: label must be 0 or 1"):
        task_from_file(bad)
    bad.write_text('{"query": "q", "pos": [""]}\n')
    with pytest.raises(InputError, match=r"b.jsonl:1: field 'pos' must be a non-empty string or a list"):
        task_from_file(bad)
    with pytest.raises(InputError, match="unknown task type 'Nope'"):
        task_from_file(write_jsonl(tmp_path / "ok.jsonl", [{"text": "t", "label": "x"}]), "Nope")
    with pytest.raises(InputError, match="does not exist"):
        task_from_file(tmp_path / "missing.jsonl")


def test_csv_retrieval_merges_rows_and_adds_distractors(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("query,pos,neg,doc\n问题一,答案一,,\n问题一,答案二,干扰,\n,,,额外段落\n问题二,答案二,,\n",
                 encoding="utf-8")
    data = task_from_file(f).load(None)
    assert data.queries == ["问题一", "问题二"]
    assert data.corpus == ["答案一", "答案二", "干扰", "额外段落"]
    assert data.qrels == [{"d0": 1, "d1": 1}, {"d1": 1}]


def test_classification_without_split_is_split_50_50(tmp_path):
    rows = [{"text": f"文本{i}", "label": i % 2} for i in range(40)]
    data = task_from_file(write_jsonl(tmp_path / "c.jsonl", rows)).load(None)
    assert len(data.texts) == len(data.train_texts) == 20 and not set(data.texts) & set(data.train_texts)


def test_every_type_runs_end_to_end(tiny_model, tmp_path):
    from tests.conftest import SAMPLE

    t = [s for s in SAMPLE if s.strip()]
    n = len(t)
    files = [
        write_jsonl(tmp_path / "sts.jsonl", [{"sentence1": t[i], "sentence2": t[(i * 7 + 3) % n], "score": i % 4}
                                             for i in range(n)]),
        write_jsonl(tmp_path / "pc.jsonl", [{"sentence1": t[i], "sentence2": t[(i * 7 + 3) % n], "label": i % 2}
                                            for i in range(n)]),
        write_jsonl(tmp_path / "cls.jsonl", [{"text": x, "label": ["好", "差"][i % 2],
                                              "split": "train" if i < n - 6 else "test"} for i, x in enumerate(t)]),
        write_jsonl(tmp_path / "clu.jsonl", [{"text": x, "cluster": i % 3} for i, x in enumerate(t)]),
        write_jsonl(tmp_path / "ret.jsonl", [{"query": t[i], "pos": [t[(i + 1) % n]]} for i in range(8)]
                    + [{"doc": t[-1]}]),
        write_jsonl(tmp_path / "rr.jsonl", [{"query": t[i], "pos": [t[(i + 1) % n]], "neg": [t[(i + 2) % n],
                                                                                             t[(i + 5) % n]]}
                                            for i in range(8)]),
        write_jsonl(tmp_path / "bt.jsonl", [{"source": t[i], "target": t[(i + 4) % n]} for i in range(10)]),
    ]
    tasks = [task_from_file(f) for f in files]
    results = evaluate(tiny_model, tasks, tmp_path, tmp_path / "out")
    assert [r["type"] for r in results] == ["STS", "PairClassification", "Classification", "Clustering",
                                            "Retrieval", "Reranking", "BitextMining"]
    for r in results:
        assert np.isfinite(r["main_score"]) and r["main_score"] == r["scores"][r["main_score_name"]]


def test_cli_task_file_and_compare(tiny_st_dir, tmp_path):
    from tests.conftest import SAMPLE
    from tests.test_cli import run

    t = [s for s in SAMPLE if s.strip()]
    f = write_jsonl(tmp_path / "mine.jsonl", [{"query": t[i], "pos": t[(i + 1) % len(t)]} for i in range(6)])
    out = tmp_path / "out"
    r = run("eval", "--task-file", str(f), "-o", str(out), "--model", str(tiny_st_dir))
    assert r.returncode == 0, r.stderr
    result = json.loads(next(out.glob("*/mine.json")).read_text(encoding="utf-8"))
    assert result["type"] == "Retrieval" and result["n_samples"] == 6
    r = run("eval", "compare", str(out))
    assert r.returncode == 0, r.stderr
    assert "| mine | Retrieval | s2p | zh | ndcg_at_10 |" in r.stdout and (out / "compare.png").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "pos": "p"}\n{"query": 3, "pos": "p"}\n', encoding="utf-8")
    r = run("eval", "--task-file", str(bad), "-o", str(out), "--model", str(tiny_st_dir))
    assert r.returncode == 2 and "bad.jsonl:2: field 'query' must be a non-empty string" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("eval", "--tasks", "ATEC", "--all")
    assert r.returncode == 2 and "exactly one of" in r.stderr
