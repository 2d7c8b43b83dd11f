"""Recipes: validation, sources under a data folder, and the evaluation-overlap filter."""

from __future__ import annotations

import csv
import json

import pytest

from m3e.data.overlap import filter_sources
from m3e.data.records import Record, Source
from m3e.errors import InputError
from m3e.training.recipe import build_sources, load_recipe


def test_overlap_filter_drops_records_and_negatives():
    src = Source("s", "triplet", [Record(" 测试  句子\n", "x", []), Record("a", "b", ["测试 句子", "n"]),
                                  Record("c", "d", [])])
    report = filter_sources([src], {"测试 句子"})
    assert [(r.anchor, r.negatives) for r in src.records] == [("a", ["n"]), ("c", [])]
    assert report["s"] == {"kept": 2, "dropped_records": 1, "removed_negatives": 1}
    assert src.skipped["overlaps an evaluation text"] == 1


def test_recipe_validation(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("base: x\nsources: [{path: a.jsonl, bogus: 1}]\n", encoding="utf-8")
    with pytest.raises(InputError, match="source 0 has unknown keys"):
        load_recipe(bad)
    bad.write_text("sources: []\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing 'base'"):
        load_recipe(bad)
    bad.write_text("base: x\nsources: [{path: a.tsv, passages: {size: 4, bogus: 1}}]\n", encoding="utf-8")
    with pytest.raises(InputError, match="passages takes a mapping"):
        load_recipe(bad)
    for where in ("WMT_newstest_zh-en/damo_mt_testsets_zh2en_news_wmt18.csv",
                  "../shared/data/STS-B/STS-B.valid.data"):  # held back wherever the data folder is
        bad.write_text(f"base: x\nsources: [{{path: a.tsv}}, {{path: {where}}}]\n", encoding="utf-8")
        with pytest.raises(InputError, match=r"source 1 \(.*\) is an EVALUATION file"):
            load_recipe(bad)
    bad.write_text("base: x\nsources: [{path: a.tsv, parallel: {path: "
                   "WMT_newstest_zh-en/damo_mt_testsets_zh2en_news_wmt18.csv, pairs: {a: b}}}]\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"source 0 \(.*wmt18.csv\) is an EVALUATION file"):
        load_recipe(bad)  # the translation side of a parallel source is checked too
    bad.write_text("base: x\nsources: [{path: a.tsv, parallel: {path: b.tsv, pairs: [a]}}]\n", encoding="utf-8")
    with pytest.raises(InputError, match="source 0: parallel takes a mapping"):
        load_recipe(bad)
    bad.write_text("base: x\nsources: []\nmax_records: 0\n", encoding="utf-8")
    with pytest.raises(InputError, match="max_records is a positive whole number"):
        load_recipe(bad)
    bad.write_text("base: x\nsources: []\ntrain: {epoch: 2}\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown train options"):
        load_recipe(bad)


RECIPES = __import__("pathlib").Path(__file__).resolve().parents[2] / "recipes"


def test_shipped_recipe_sources_on_real_data(shared_data, tmp_path):
    """The v2 recipe through the Arrow cache gives the records the in-memory reader and a string filter give:
    every record of each source (the recipe without its cap), then the recipe's own 600-per-source sample."""
    from m3e.data.records import read_source
    from m3e.data.texthash import norm
    from m3e.evaluation.builtin import BUILTIN_TASKS, HELD_BACK_FILES
    from m3e.training.recipe import evaluation_texts

    shipped = load_recipe(RECIPES / "m3e-small-zh.yaml")
    assert shipped["max_records"] == 600 and shipped["train"]["merge_scale"] == 0.7
    recipe = {k: v for k, v in shipped.items() if k != "max_records"}
    sources, report, sizes = build_sources(recipe, shared_data, cache_dir=tmp_path / "cache")
    assert len(sizes) == len(BUILTIN_TASKS) + len(HELD_BACK_FILES) and sum(sizes.values()) > 250_000
    texts, _ = evaluation_texts(shared_data)
    for spec in HELD_BACK_FILES:  # evaluation files no task reads are held back too, every text field of them
        rows = list(csv.reader((shared_data / spec["path"]).open(encoding="utf-8"),
                               delimiter="\t" if spec["format"] == "tsv" else ","))
        if spec["format"] == "csv":
            rows = rows[1:]  # header
        held = {norm(t) for row in rows for t in row[:2]}
        assert len(held) > 2000 and held <= texts, spec["path"]
    for spec, source in zip(recipe["sources"], sources, strict=True):
        options = {k: v for k, v in spec.items() if k not in ("path", "max_records", "license")}
        mem = read_source(shared_data / spec["path"], **options)
        if spec.get("max_records"):
            mem.sample(spec["max_records"])
        kept = [r for r in mem.records if norm(r.anchor) not in texts and norm(r.positive) not in texts]
        assert len(source) == len(kept) == report[source.name]["kept"], source.name
        assert source.license and report[source.name]["license"] == spec["license"]
        assert source.batch([0])[0].anchor == kept[0].anchor
    counts = {s.name: len(s) for s in sources}
    assert counts["ATEC.valid"] == 20_000 - report["ATEC.valid"]["dropped_records"]  # the whole valid split
    assert report["atec-train"]["dropped_records"] > 1000  # the competition file holds ATEC test pairs
    assert report["lcsts-train"]["dropped_records"] == 114  # SOURCE.md: 114 rows share a text with val/test
    assert {s.kind for s in sources} == {"triplet", "pair", "scored"}
    assert next(s for s in sources if s.name == "nlpcc-kbqa").batch([0])[0].positive.count("|||") == 0
    assert all(not any(x in (s.license or "") for x in ("NC", "non-commercial", "research only"))
               for s in sources)
    capped, capped_report, _ = build_sources(shipped, shared_data, cache_dir=tmp_path / "cache")
    for spec, source in zip(shipped["sources"], capped, strict=True):
        limit = min(600, spec.get("max_records") or 600)
        full = report[source.name]["kept"] + report[source.name]["dropped_records"]
        assert capped_report[source.name]["kept"] + capped_report[source.name]["dropped_records"] == min(limit, full)
        options = {k: v for k, v in spec.items() if k not in ("path", "max_records", "license")}
        mem = read_source(shared_data / spec["path"], **options)
        mem.sample(limit)  # the same fixed-seed sample as --max-records 600 draws
        kept = [r for r in mem.records if norm(r.anchor) not in texts and norm(r.positive) not in texts]
        assert len(source) == len(kept) and source.batch([0])[0].anchor == kept[0].anchor, source.name
    # the first v2 was trained on 12,093 (with 598 WMT18 pairs); the STSb multi-MT test and dev sentences filter 11
    # more, and the held-back evaluation files (WMT18 is no source now; STS-B valid) leave 11,454
    assert sum(len(s) for s in capped) == 11_454
    assert not any("wmt" in s.name.lower() for s in capped)


def test_v1_recipe_passages_hold_no_evaluation_text(shared_data, tmp_path):
    from m3e.data.passages import join_sentences
    from m3e.data.records import read_source
    from m3e.data.texthash import norm
    from m3e.training.recipe import evaluation_texts

    recipe = load_recipe(RECIPES / "m3e-small-zh-v1.yaml")
    sources, report, sizes = build_sources(recipe, shared_data, cache_dir=tmp_path / "cache")
    assert next(s for s in sources if s.name == "BQ.valid").weight == 2
    assert recipe["train"]["merge_scale"] == 0.7
    assert report["STS-B.train"]["dropped_records"] > 0  # STS-B train shares sentences with its test split
    assert report["bge_finetune_data"]["dropped_records"] > 0  # SOURCE.md: 80 queries + 93 positives leak
    texts, _ = evaluation_texts(shared_data)
    for s in (s for s in sources if s.name.endswith("-passages")):
        assert s.kind == "pair" and s.doc_instruction == "passage" and s.keep_base and len(s.records) >= 300
        assert all(norm(r.anchor) not in texts for r in s.records)
    # passages are joined after the filter: no LCQMC sentence that is an evaluation text is inside one
    raw = read_source(shared_data / "LCQMC" / "LCQMC.valid.data", format="tsv",
                      columns=["sentence1", "sentence2", "label"])
    leaked = {join_sentences([t]) for r in raw.records for t in (r.anchor, r.positive) if norm(t) in texts}
    passages = next(s for s in sources if s.name == "lcqmc-passages").records
    assert len(leaked) > 500
    ends = set("。！？!?.…；; ") | set("'\"”’」』)）")

    def whole_sentence_in(t: str, passage: str) -> bool:  # not a coincidental tail of a longer sentence
        at = passage.find(t)
        while at >= 0:
            if at == 0 or passage[at - 1] in ends:
                return True
            at = passage.find(t, at + 1)
        return False

    assert not [t for t in leaked for r in passages if whole_sentence_in(t, r.positive)]


def test_recipe_from_a_data_folder(tmp_path, tiny_st_dir, monkeypatch):
    """A recipe on a miniature data folder: tsv without header, renamed csv columns, filter against a task."""
    data = tmp_path / "data"
    (data / "STS-B").mkdir(parents=True)
    (data / "STS-B" / "STS-B.test.data").write_text("测试一\t测试二\t3\n", encoding="utf-8")
    (data / "train.tsv").write_text("测试一\t别的\t1\n甲\t乙\t0\n丙\t丁\t1\n", encoding="utf-8")
    (data / "pairs.csv").write_text("0,1\n你好,hello\n再见,bye\n", encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({
        "base": str(tiny_st_dir), "filter_tasks": ["STSB"],
        "sources": [{"path": "train.tsv", "format": "tsv", "columns": ["sentence1", "sentence2", "label"]},
                    {"path": "pairs.csv", "rename": {"0": "query", "1": "positive"}}],
        "train": {"epochs": 1, "batch_size": 2, "progress": False}}), encoding="utf-8")
    twice = json.loads(recipe.read_text(encoding="utf-8"))
    twice["sources"].append(twice["sources"][0])
    (tmp_path / "twice.yaml").write_text(json.dumps(twice), encoding="utf-8")
    sources, report, _ = build_sources(load_recipe(tmp_path / "twice.yaml"), data, tmp_path / "cache")
    assert [s.name for s in sources] == ["train#1", "pairs", "train#2"]  # two sources, two reports
    assert report["train#1"] == report["train#2"] and "train" not in report
    twice["sources"][2] = {**twice["sources"][0], "passages": {"size": 2}}
    (tmp_path / "twice.yaml").write_text(json.dumps(twice), encoding="utf-8")
    passages = build_sources(load_recipe(tmp_path / "twice.yaml"), data, tmp_path / "cache")[0][2]
    assert passages.name == "train-passages" and len(passages.records) == 1  # 1 positive pair left, 4 texts
    sources, report, sizes = build_sources(load_recipe(recipe), data, tmp_path / "cache")
    assert report["train"] == {"kept": 2, "dropped_records": 1, "removed_negatives": 0, "license": None}
    assert sizes == {"STSB": 2} and [s.kind for s in sources] == ["scored", "pair"]


def test_max_records_caps_every_source(tmp_path):
    """The smoke-run cap: every source keeps a fixed-seed sample of at most N records, the recipe's own smaller
    max_records still wins, and the same records are kept each time."""
    data = tmp_path / "data"
    (data / "STS-B").mkdir(parents=True)
    (data / "STS-B" / "STS-B.test.data").write_text("测试一\t测试二\t3\n", encoding="utf-8")
    (data / "a.tsv").write_text("".join(f"句子{i}\t另一句{i}\t{i % 2}\n" for i in range(20)), encoding="utf-8")
    (data / "b.tsv").write_text("".join(f"问{i}\t答{i}\n" for i in range(20)), encoding="utf-8")
    recipe = {"base": "unused", "filter_tasks": ["STSB"],
              "sources": [{"path": "a.tsv", "format": "tsv", "columns": ["sentence1", "sentence2", "label"]},
                          {"path": "b.tsv", "format": "tsv", "columns": ["query", "positive"], "max_records": 3}]}
    (tmp_path / "r.yaml").write_text(json.dumps(recipe), encoding="utf-8")
    full = build_sources(load_recipe(tmp_path / "r.yaml"), data, tmp_path / "cache")[0]
    capped = build_sources(load_recipe(tmp_path / "r.yaml"), data, tmp_path / "cache", max_records=5)[0]
    again = build_sources(load_recipe(tmp_path / "r.yaml"), data, tmp_path / "cache", max_records=5)[0]
    assert [len(s) for s in full] == [20, 3] and [len(s) for s in capped] == [5, 3]
    assert capped[0].skipped["over max_records (fixed-seed sample kept)"] == 15
    kept = [(r.anchor, r.positive) for r in capped[0].to_memory().records]
    assert kept == [(r.anchor, r.positive) for r in again[0].to_memory().records]
    assert set(kept) <= {(r.anchor, r.positive) for r in full[0].to_memory().records}


def test_parallel_source_under_the_data_folder_goes_through_the_filter(tmp_path):
    """A parallel source's second file is found under --data-dir like its first, and a pair with an evaluation
    text on either side is dropped by the test-overlap filter."""
    data = tmp_path / "data"
    (data / "STS-B").mkdir(parents=True)
    (data / "STS-B" / "STS-B.test.data").write_text("测试句子\ta test sentence\t3\n", encoding="utf-8")
    (data / "mt").mkdir()
    (data / "mt" / "train.zh").write_text("".join(f"中文{i}\n" for i in range(6)) + "测试句子\n", encoding="utf-8")
    (data / "mt" / "train.en").write_text("".join(f"english {i}\n" for i in range(7)), encoding="utf-8")
    recipe = {"base": "unused", "filter_tasks": ["STSB"],
              "sources": [{"path": "mt/train.zh", "format": "tsv", "columns": ["text"], "name": "zh-en",
                           "parallel": {"path": "mt/train.en", "pairs": {"text": "text"}}}]}
    (tmp_path / "r.yaml").write_text(json.dumps(recipe), encoding="utf-8")
    [source], report, _ = build_sources(load_recipe(tmp_path / "r.yaml"), data, tmp_path / "cache")
    pairs = [(r.anchor, r.positive) for r in source.to_memory().records]
    assert pairs == [(f"中文{i}", f"english {i}") for i in range(6)]
    assert report["zh-en"]["dropped_records"] == 1


def test_finetune_sources_file_takes_a_recipes_source_keys(tmp_path):
    """`m3e finetune --sources FILE` reads the same source specs as recipes, through the same checks."""
    from m3e.training.recipe import sources_file

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "pairs.csv").write_text("0,1\n" + "".join(f"问题{i},答案{i}\n" for i in range(10)),
                                              encoding="utf-8")
    spec = tmp_path / "d" / "sources.yaml"
    spec.write_text(json.dumps([{"path": "pairs.csv", "rename": {"0": "query", "1": "positive"}, "max_records": 4,
                                 "name": "qa", "weight": 2, "instruction": "问题："}]), encoding="utf-8")
    [source] = sources_file(spec, tmp_path / "cache")
    assert (source.name, len(source), source.weight, source.instruction) == ("qa", 4, 2, "问题：")
    spec.write_text(json.dumps([{"path": "pairs.csv", "colums": ["a"]}]), encoding="utf-8")
    with pytest.raises(InputError, match=r"sources.yaml: source 0 has unknown keys \['colums'\]"):
        sources_file(spec)
    spec.write_text("{not: [valid", encoding="utf-8")
    with pytest.raises(InputError, match="sources.yaml: invalid JSON/YAML"):
        sources_file(spec)


def test_every_shipped_recipe_loads_and_names_known_tasks():
    from m3e.distill.pipeline import load_distill_recipe
    from m3e.evaluation.builtin import select_tasks

    found = sorted(RECIPES.glob("*.yaml"))
    assert len(found) >= 5
    for path in found:
        recipe = (load_distill_recipe if "sources_from" in path.read_text(encoding="utf-8") else load_recipe)(path)
        assert recipe["sources"], path
        if recipe.get("eval_tasks"):  # checkpoints are chosen on validation tasks only
            assert all(t.split == "validation" for t in select_tasks(recipe["eval_tasks"])), path


def test_train_base_override_continues_another_model(tmp_path, tiny_st_dir):
    """`m3e train RECIPE --base MODEL`: the recipe's data and options from another starting model (one run
    continued from an earlier one); the report records both bases."""
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "data"
    (data / "STS-B").mkdir(parents=True)
    (data / "STS-B" / "STS-B.test.data").write_text("测试一\t测试二\t3\n", encoding="utf-8")
    (data / "pairs.jsonl").write_text("".join(json.dumps({"query": f"问题{i}", "positive": f"答案{i}号"},
                                                         ensure_ascii=False) + "\n" for i in range(12)),
                                      encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"base": "no-such-model-anywhere", "filter_tasks": ["STSB"],
                                  "sources": [{"path": "pairs.jsonl"}],
                                  "train": {"epochs": 1, "batch_size": 4, "progress": False}}), encoding="utf-8")
    m3e = str(Path(sys.executable).with_name("m3e"))
    done = subprocess.run([m3e, "train", str(recipe), "--data-dir", str(data), "-o", str(tmp_path / "out"),
                           "--base", str(tiny_st_dir), "--device", "cpu", "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "recipe_report.json").read_text(encoding="utf-8"))
    assert report["recipe"]["base"] == str(tiny_st_dir)
    assert report["recipe"]["recipe_base"] == "no-such-model-anywhere"
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
