"""Built-in task loaders on the real files (row counts after documented filtering) and bad input."""

from __future__ import annotations

import json

import pytest

from m3e.errors import InputError
from m3e.evaluation.builtin import BUILTIN_TASKS, select_tasks
from m3e.evaluation.runner import evaluate, load_results
from m3e.evaluation.tasks import Task
from m3e.evaluation.types.sts import load_jsonl_pairs, load_tsv_pairs

EXPECTED = {  # rows used, from each dataset's SOURCE.md
    "ATEC": 20_000, "BQ": 10_000, "LCQMC": 12_500, "PAWSX": 2_000, "STSB": 1_361, "AFQMC": 4_316,
    "SOHU-dd": 500, "SOHU-dc": 500, "Ocnli": 3_000 - 1_103 - 50, "Cmnli": 12_241 - 3_926,
}
# Classification: (test rows, training-pool rows, classes, dropped) after documented filtering.
CLASSIFICATION = {
    "TNews": (10_000 - 235, 2_010 - 73, 15, {"duplicate text": 235, "train-pool title also in test": 73}),
    "IFlyTek": (871, 870, 90, {"label with fewer than 2 rows": 8}),  # 1,749 rows, 50/50
    "EPRSTMT": (305, 305, 2, {}),
    "CSLDCP": (891, 891, 64, {"label with fewer than 2 rows": 2}),  # 1,784 rows
    "ChnSentiCorp": (589, 589, 2, {"duplicate text": 22}),  # 1,200 rows
    "Waimai": (1_000, 11_987 - 7 - 1_000, 2, {"duplicate text": 7}),
    "OnlineShopping": (1_000, 62_774 - 49 - 1 - 1_000, 2, {"duplicate text": 49, "empty text": 1}),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_builtin_loader_row_counts(shared_data, name):
    data = BUILTIN_TASKS[name].load(shared_data)
    assert len(data) == EXPECTED[name] == len(data.sentences1) == len(data.sentences2)
    if BUILTIN_TASKS[name].type == "PairClassification":
        assert set(data.labels) == {0.0, 1.0}


@pytest.mark.parametrize("name", list(CLASSIFICATION))
def test_classification_loaders(shared_data, name):
    n_test, n_train, n_classes, dropped = CLASSIFICATION[name]
    data = BUILTIN_TASKS[name].load(shared_data)
    assert (len(data.texts), len(data.train_texts)) == (n_test, n_train)
    assert len(set(data.labels)) == n_classes and set(data.labels) == set(data.train_labels)
    assert data.dropped == dropped
    assert not set(data.texts) & set(data.train_texts)  # no test text in the training pool
    again = BUILTIN_TASKS[name].load(shared_data)  # the fixed-seed split is the same every time
    assert again.texts == data.texts and again.train_texts == data.train_texts


def test_clustering_retrieval_bitext_loaders(shared_data):
    counts = {name: BUILTIN_TASKS[name].load(shared_data) for name in (
        "CLSClusteringS2S", "CLSClusteringP2P", "CSLDisciplineClustering", "CSLRetrieval", "CMRC2018Retrieval",
        "WMT19BitextMining", "WMT20BitextMining")}
    assert [len(set(counts[n].labels)) for n in ("CLSClusteringS2S", "CLSClusteringP2P")] == [13, 13]
    assert len(counts["CSLDisciplineClustering"]) == 1_000 and len(set(counts["CSLDisciplineClustering"].labels)) == 67
    csl = counts["CSLRetrieval"]
    assert (len(csl.queries), len(csl.corpus)) == (1_000, 1_000)
    cmrc = counts["CMRC2018Retrieval"]
    assert (len(cmrc.queries), len(cmrc.corpus)) == (3_219, 848)
    assert all(len(q) == 1 and next(iter(q)) in set(cmrc.doc_ids) for q in cmrc.qrels)
    assert (len(counts["WMT19BitextMining"]), len(counts["WMT20BitextMining"])) == (2_001, 1_418)


def test_lines_survive_unicode_line_separators(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"sentence": "a\u2028b", "label": 1}\n{"sentence": "c", "label": 2}\n', encoding="utf-8")
    f.write_text(f.read_text(encoding="utf-8").replace("\\u2028", "\u2028"), encoding="utf-8")
    from m3e.evaluation.data import jsonl_rows

    rows = list(jsonl_rows(f))
    assert [no for no, _ in rows] == [1, 2] and rows[0][1]["sentence"] == "a\u2028b"


def test_nli_drops_are_reported(shared_data):
    assert BUILTIN_TASKS["Ocnli"].load(shared_data).dropped == {"label neutral": 1_103, "label -": 50}


def test_select_tasks():
    assert [t.name for t in select_tasks(["atec", "STSB"])] == ["ATEC", "STSB"]
    with pytest.raises(InputError, match="unknown task.*nope.*known tasks: ATEC"):
        select_tasks(["nope"])
    with pytest.raises(InputError, match="unknown category"):
        select_tasks(category="x2y")


def test_malformed_rows_name_file_and_line(tmp_path):
    f = tmp_path / "p.tsv"
    f.write_text("a\tb\t1\nc\td\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"p.tsv:2: expected 3 tab-separated fields, found 2"):
        load_tsv_pairs(f)
    f.write_text("a\tb\tyes\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"p.tsv:1: label 'yes' is not a number"):
        load_tsv_pairs(f)
    j = tmp_path / "p.jsonl"
    j.write_text('{"sentence1": "a", "label": 1}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"p.jsonl:1: missing field 'sentence2'"):
        load_jsonl_pairs(j)


def test_missing_file_names_path_and_folder(tmp_path):
    with pytest.raises(InputError, match=r"missing data file .*ATEC.test.data \(dataset folder .*ATEC\)"):
        BUILTIN_TASKS["ATEC"].load(tmp_path)


def _toy_tasks(tmp_path):
    sts = tmp_path / "sts.tsv"
    sts.write_text("今天天气很好\t今天阳光明媚\t4\n我喜欢吃苹果\t他在北京工作\t0\n这部电影很好看\t这部电影很好看\t5\n"
                   "机器学习很有趣\tI like apples\t1\n", encoding="utf-8")
    pc = tmp_path / "pc.tsv"
    pc.write_text("今天天气很好\t今天阳光明媚\tentailment\n我喜欢吃苹果\t他在北京工作\tcontradiction\n"
                  "这部电影很好看\t这部电影很好看\tentailment\n机器学习很有趣\tI like apples\tneutral\n",
                  encoding="utf-8")
    one = tmp_path / "one.tsv"
    one.write_text("a\tb\tentailment\n", encoding="utf-8")
    nli = {"entailment": 1.0, "contradiction": 0.0}
    return [
        Task("toy-sts", "STS", "s2s", "toy", "cosine_spearman", lambda root: load_tsv_pairs(sts)),
        Task("toy-pc", "PairClassification", "s2s", "toy", "max_ap", lambda root: load_tsv_pairs(pc, nli)),
        Task("toy-one", "PairClassification", "s2s", "toy", "max_ap", lambda root: load_tsv_pairs(one, nli)),
    ]


def test_runner_writes_results_and_is_deterministic(tiny_model, tmp_path):
    tasks = _toy_tasks(tmp_path)
    out1, out2 = tmp_path / "r1", tmp_path / "r2"
    first = evaluate(tiny_model, tasks[:2], tmp_path, out1)
    evaluate(tiny_model, tasks[:2], tmp_path, out2)
    for name in ("toy-sts", "toy-pc"):
        a = json.loads(next(out1.glob(f"*/{name}.json")).read_text())
        b = json.loads(next(out2.glob(f"*/{name}.json")).read_text())
        assert a["scores"] == b["scores"]
        for key in ("task", "model", "category", "main_score_name", "main_score", "scores", "n_samples", "seconds"):
            assert key in a
        assert 0 <= a["main_score"] <= 1 or a["main_score_name"].endswith("spearman")
    assert first[1]["dropped"] == {"label neutral": 1} and first[1]["n_samples"] == 3
    summary = (out1 / "summary.md").read_text()
    assert "toy-sts" in summary and "average s2s (category" in summary and "average STS (type" in summary
    assert set(load_results(out1)) == {tiny_model.name}


def test_single_class_pair_task_is_refused(tiny_model, tmp_path):
    with pytest.raises(InputError, match="toy-one: needs both labels"):
        evaluate(tiny_model, _toy_tasks(tmp_path)[2:], tmp_path, tmp_path / "r")


def test_cli_eval_on_builtin_task(shared_data, builtin_model, tmp_path):
    from tests.test_cli import run

    r = run("eval", "--tasks", "STSB", "--model", "multilingual-e5-small-q4", "--data-dir", str(shared_data),
            "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "multilingual-e5-small-q4" / "STSB.json").read_text())
    assert result["n_samples"] == 1361 and result["main_score_name"] == "cosine_spearman"
    assert abs(result["main_score"] - 0.774) <= 0.003
    r = run("eval", "--tasks", "nope", "--data-dir", str(shared_data))
    assert r.returncode == 2 and "known tasks" in r.stderr
