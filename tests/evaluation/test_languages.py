"""English and cross-lingual STS (STSb multi-MT), the validation split and the language view of summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from m3e.errors import InputError
from m3e.evaluation.builtin import BUILTIN_TASKS, select_tasks
from m3e.evaluation.runner import evaluate, load_results, summary_markdown
from m3e.evaluation.types.sts import sts_scores

ZH = ["一个女孩正在给自己的头发做造型。", "一群男人在沙滩上踢足球。", "一个女人正在测量另一个女人的脚踝。",
      "一个人在切洋葱。", "一只猫在睡觉。"]
ZH2 = ["一个女孩正在梳头。", "一群男孩在沙滩上踢足球。", "一个女人测量另一个女人的脚踝。", "一个人在切土豆。",
       "狗在叫。"]
EN = ["A girl is styling her hair.", "A group of men play soccer on the beach.",
      "One woman is measuring another woman's ankle.", "A man is slicing an onion.", "A cat is sleeping."]
EN2 = ["A girl is brushing her hair.", "A group of boys are playing soccer on the beach.",
       "A woman measures another woman's ankle.", "A man is slicing a potato.", "A dog barks."]
SCORES = [2.5, 3.6, 5.0, 1.8, 0.2]


def _write(folder, lang, split, first, second, scores=SCORES):
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f'"{a}","{b}",{s}\n' for a, b, s in zip(first, second, scores, strict=True))
    (folder / f"stsb-{lang}-{split}.csv").write_text(rows, encoding="utf-8")


@pytest.fixture
def stsb_dir(tmp_path):
    folder = tmp_path / "data" / "STSB_multi_mt"
    for split in ("test", "dev"):
        _write(folder, "en", split, EN, EN2)
        _write(folder, "zh", split, ZH, ZH2)
    return tmp_path / "data"


def test_cross_lingual_pairs_take_each_side_from_its_language(stsb_dir):
    en, zh_en, en_zh = (BUILTIN_TASKS[n].load(stsb_dir) for n in ("STSB-en", "STSB-zh-en", "STSB-en-zh"))
    assert (en.sentences1, en.sentences2) == (EN, EN2)
    assert (zh_en.sentences1, zh_en.sentences2) == (ZH, EN2)
    assert (en_zh.sentences1, en_zh.sentences2) == (EN, ZH2)
    assert en.labels == zh_en.labels == en_zh.labels == SCORES
    dev = BUILTIN_TASKS["STSB-zh-dev"].load(stsb_dir)
    assert (dev.sentences1, dev.sentences2) == (ZH, ZH2)


def test_misaligned_language_files_are_refused(stsb_dir):
    folder = stsb_dir / "STSB_multi_mt"
    _write(folder, "zh", "test", ZH[:4], ZH2[:4], SCORES[:4])
    with pytest.raises(InputError, match="5 rows and .*4; the language files of STSb multi-MT must be aligned"):
        BUILTIN_TASKS["STSB-en-zh"].load(stsb_dir)
    _write(folder, "zh", "test", ZH, ZH2, [2.5, 3.6, 4.0, 1.8, 0.2])
    with pytest.raises(InputError, match=r"stsb-zh-test.csv:3: score 4.0 but 5.0 .* not aligned"):
        BUILTIN_TASKS["STSB-zh-en"].load(stsb_dir)
    (folder / "stsb-en-test.csv").write_text('"a","b",high\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"stsb-en-test.csv:1: similarity_score 'high' is not a number"):
        BUILTIN_TASKS["STSB-en"].load(stsb_dir)


def test_real_files_row_counts(shared_data):
    for name, n in (("STSB-en", 1_379), ("STSB-zh-en", 1_379), ("STSB-en-zh", 1_379), ("STSB-en-dev", 1_500),
                    ("STSB-zh-en-dev", 1_500)):
        data = BUILTIN_TASKS[name].load(shared_data)
        assert len(data) == n and not data.dropped
        assert min(data.labels) == 0.0 and max(data.labels) == 5.0


def test_splits_and_languages_select_tasks():
    validation = select_tasks(split="validation")
    assert {t.name for t in validation} == {"STSB-zh-dev", "STSB-en-dev", "STSB-zh-en-dev", "STSB-en-zh-dev"}
    assert all(t.split == "test" for t in select_tasks())  # --all never runs validation files
    assert select_tasks(["validation"]) == validation  # a split's name stands for its tasks (recipes)
    assert {t.name for t in select_tasks(language="en")} == {"STSB-en"}
    assert {t.name for t in select_tasks(language="zh-en")} == {"STSB-zh-en", "STSB-en-zh", "WMT19BitextMining",
                                                               "WMT20BitextMining"}
    assert [t.name for t in select_tasks(language="en", split="validation")] == ["STSB-en-dev"]
    with pytest.raises(InputError, match="unknown language 'fr'"):
        select_tasks(language="fr")
    with pytest.raises(InputError, match="no built-in test task matches.*language=en"):
        select_tasks(task_type="Retrieval", language="en")


def test_sts_score_matches_a_naive_spearman(tiny_model, stsb_dir, tmp_path):
    from scipy.stats import spearmanr

    [result] = evaluate(tiny_model, select_tasks(["STSB-zh-en"]), stsb_dir, tmp_path / "out")
    a = tiny_model.encode(ZH, prompt_name="query")
    b = tiny_model.encode(EN2, prompt_name="query")
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert result["main_score"] == pytest.approx(spearmanr(SCORES, cos).statistic, abs=1e-9)
    assert result["main_score"] == pytest.approx(sts_scores(a, b, SCORES)["cosine_spearman"], abs=1e-9)
    assert (result["language"], result["split"]) == ("zh-en", "test")


def _result(task, score, **extra):
    return {"task": task, "type": "STS", "category": "s2s", "main_score_name": "cosine_spearman",
            "main_score": score, **extra}


def test_summary_has_language_rows_and_keeps_validation_apart():
    results = {"m": {
        "ATEC": _result("ATEC", 0.4, language="zh"),
        "STSB-en": _result("STSB-en", 0.8, language="en"),
        "STSB-zh-en": _result("STSB-zh-en", 0.6, language="zh-en"),
        "WMT19BitextMining": {**_result("WMT19BitextMining", 0.9), "type": "BitextMining", "category": "bitext"},
        "STSB-en-dev": _result("STSB-en-dev", 0.1, language="en", split="validation"),
    }}
    table = summary_markdown(results)
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in table.splitlines()
            if line.startswith("| **average")}
    assert rows["**average Chinese (language, 1)**"] == "40.00"
    assert rows["**average English (language, 1)**"] == "80.00"
    # an older result file without a language gets its built-in task's (WMT: cross-lingual)
    assert rows["**average cross-lingual (language, 2)**"] == "75.00"
    assert rows["**average STS (type, 3)**"] == "60.00"  # the validation task joins no test average
    assert rows["**average validation (1, not a test score)**"] == "10.00"
    assert "| STSB-en-dev (validation) |" in table


def test_cli_eval_validation_split_by_language(tiny_st_dir, stsb_dir, tmp_path):
    from tests.test_cli import run

    out = tmp_path / "out"
    r = run("eval", "--split", "validation", "--language", "zh-en", "--model", str(tiny_st_dir), "--data-dir",
            str(stsb_dir), "-o", str(out))
    assert r.returncode == 0, r.stderr
    results = next(iter(load_results(out).values()))
    assert set(results) == {"STSB-zh-en-dev", "STSB-en-zh-dev"}
    assert all(r["split"] == "validation" for r in results.values())
    assert "validation (2, not a test score)" in (out / "summary.md").read_text(encoding="utf-8")
    r = run("eval", "--language", "fr", "--data-dir", str(stsb_dir))
    assert r.returncode == 2 and "'fr' is not one of" in r.stderr
    listed = run("eval", "--list")
    line = next(x for x in listed.stdout.splitlines() if x.startswith("STSB-en-dev "))
    assert line.split()[3:5] == ["en", "validation"]
    assert json.loads((next(out.glob("*/STSB-zh-en-dev.json"))).read_text())["language"] == "zh-en"
