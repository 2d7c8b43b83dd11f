"""m3e distill on a tiny teacher in seconds: vocabulary pruning, teacher vectors (resumable), model2vec,
tokenlearn, int8, validation on held-out records only, and the test-overlap filter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from m3e.errors import InputError
from tests.conftest import SAMPLE

WORDS = ["今天", "天气", "很好", "阳光", "明媚", "我", "喜欢", "吃", "苹果", "他", "在", "北京", "工作", "这部", "电影",
         "好看", "机器", "学习", "有趣", "文本", "嵌入", "长"]


def _pairs(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=4))
        out.append({"query": "".join(words[:3]) + str(i % 3), "positive": "".join(words[1:]) + "很好"})
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("distill_data")
    (d / "pairs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _pairs(300)),
                                   encoding="utf-8")
    scored = [{"sentence1": a, "sentence2": b, "label": int(i % 2)} for i, (a, b) in
              enumerate(zip(SAMPLE, SAMPLE[1:] + SAMPLE[:1], strict=True))]
    (d / "scored.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scored * 8),
                                    encoding="utf-8")
    (d / "heldback.csv").write_text("今天天气很好,他在北京工作,3.0\n", encoding="utf-8")
    return d


def _recipe(tmp_path: Path, teacher: Path, **distill) -> Path:
    options = {"pca_dims": 8, "extra_latin": 5, "held_out": 0.1, **distill}
    recipe = tmp_path / "static.yaml"
    recipe.write_text(
        f"name: tiny-static\nteacher: {teacher}\nfilter_tasks: []\n"
        "filter_files: [{path: heldback.csv, columns: [a, b, score]}]\n"
        "sources:\n  - {path: pairs.jsonl, doc_instruction: passage}\n  - {path: scored.jsonl}\n"
        f"distill: {json.dumps(options)}\n", encoding="utf-8")
    return recipe


def test_distill_end_to_end_and_resume(tmp_path, tiny_st_dir, data_dir):
    from m3e import load_model
    from m3e.distill.corpus import Corpus
    from m3e.distill.pipeline import run_distill

    out = run_distill(_recipe(tmp_path, tiny_st_dir), data_dir, tmp_path / "out", log=lambda _m: None)
    report = json.loads((out / "report.json").read_text())
    assert set(report["validation"]) == {"teacher", "plain", "tokenlearn", "shipped"}
    for result in report["validation"].values():
        assert result["score"] is not None and result["per_source"]
    model = load_model(str(out / "model"))
    assert type(model).__name__ == "StaticEmbedder" and model.dim == 8
    from m3e.distill.pack import PACKED

    assert report["packed_bytes"] > 0 and (out / "packed" / PACKED).is_file()
    # the shipped folder is exactly what the packed file dequantizes to
    from m3e.distill.pack import read_packed

    rows, _, info = read_packed(out / "packed")
    np.testing.assert_array_equal(rows, model.weight.detach().numpy())
    assert info["dim"] == 8 and info["quantize"] == "int8"
    for folder in (out / "model", out / "packed"):  # no teacher's 512 limit: sentence-transformers reads it all
        tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        assert tok["truncation"] is None and tok["padding"] is None
    # no held-out text and no held-back (filter_files) text is trained on
    corpus = Corpus.load(out / "work" / "corpus")
    held = {t for e in corpus.held_out.values() for a, p, _ in e["pairs"] for t in (a, p)}
    assert held and not held & set(corpus.texts)
    assert "今天天气很好" not in corpus.texts and report["evaluation_texts"]["file:heldback.csv"] == 3
    assert set(corpus.roles) == {"query", "passage"}
    # the vocabulary check ran: every corpus character known to the teacher is still known
    assert report["vocabulary"]["kept"] <= report["vocabulary"]["teacher_vocabulary"]
    # resume: every stage is found, nothing is recomputed, the result is the same
    shards = sorted((out / "work").glob("teacher-*/vectors-*.npy"))
    stamps = [p.stat().st_mtime_ns for p in shards]
    with pytest.raises(InputError, match="pass --resume"):
        run_distill(_recipe(tmp_path, tiny_st_dir), data_dir, out, log=lambda _m: None)
    again = run_distill(_recipe(tmp_path, tiny_st_dir), data_dir, out, resume=True, log=lambda _m: None)
    assert [p.stat().st_mtime_ns for p in shards] == stamps
    np.testing.assert_array_equal(load_model(str(again / "model")).weight.detach().numpy(), rows)


def test_teacher_vectors_resume_after_a_kill(tmp_path, tiny_model, monkeypatch):
    import m3e.distill.features as features

    monkeypatch.setattr(features, "SHARD", 4)
    texts = [f"{w}{i}" for i, w in enumerate(WORDS)]
    roles = ["query" if i % 3 else "passage" for i in range(len(texts))]
    key = {"teacher": "tiny"}
    full = features.teacher_vectors(tiny_model, texts, roles, tmp_path / "a", key, log=lambda _m: None)
    calls = {"n": 0}
    real = tiny_model.encode

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "encode", dying)
    with pytest.raises(KeyboardInterrupt):
        features.teacher_vectors(tiny_model, texts, roles, tmp_path / "b", key, log=lambda _m: None)
    done = sorted(p.name for p in (tmp_path / "b").glob("vectors-*.npy"))
    assert 0 < len(done) < -(-len(texts) // 4)
    assert done == sorted(p.name for p in (tmp_path / "a").glob("vectors-*.npy"))[:len(done)]
    assert not list((tmp_path / "b").glob(".*"))  # no half-written shard
    monkeypatch.setattr(tiny_model, "encode", real)
    resumed = features.teacher_vectors(tiny_model, texts, roles, tmp_path / "b", key, log=lambda _m: None)
    np.testing.assert_allclose(resumed, full, atol=1e-6)
    # each text under its role's prompt
    np.testing.assert_allclose(full[1], tiny_model.encode([texts[1]], prompt_name="query")[0], atol=1e-6)
    np.testing.assert_allclose(full[0], tiny_model.encode([texts[0]], prompt_name="passage")[0], atol=1e-6)
    with pytest.raises(InputError, match="another teacher"):
        features.teacher_vectors(tiny_model, texts, roles, tmp_path / "b", {**key, "teacher": "other"})
    # a corpus that grows at its end reuses every unchanged shard
    calls["n"] = -10**6
    monkeypatch.setattr(tiny_model, "encode", dying)
    grown = features.teacher_vectors(tiny_model, texts + ["新的句子"], roles + ["query"], tmp_path / "b", key,
                                     log=lambda _m: None)
    assert calls["n"] <= -10**6 + 2  # only the last shard was encoded (one call per role in it)
    np.testing.assert_allclose(grown[:len(texts)], full, atol=1e-6)


def test_pruned_teacher_gives_the_same_vectors_on_covered_text(tiny_model):
    from m3e.distill.vocab import choose_tokens, prune_teacher

    st = tiny_model.model
    texts = SAMPLE[:10]
    keep, why = choose_tokens(st[0].tokenizer, texts)
    assert why["corpus"] > 0 and len(keep) < len(st[0].tokenizer)
    model, tok = prune_teacher(st[0].auto_model, st[0].tokenizer, keep)
    assert model.get_input_embeddings().weight.shape[0] == len(keep)

    def mean_hidden(m, t):
        enc = t(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = m(**enc).last_hidden_state
        mask = enc["attention_mask"][..., None].float()
        return (hidden * mask).sum(1) / mask.sum(1)

    np.testing.assert_allclose(mean_hidden(model, tok), mean_hidden(st[0].auto_model, st[0].tokenizer), atol=1e-5)


def test_single_characters_of_served_scripts_are_kept_beyond_the_corpus(tiny_model):
    from m3e.distill.vocab import choose_tokens

    tok = tiny_model.model[0].tokenizer
    keep, why = choose_tokens(tok, ["今天"])
    assert {"今", "天", "苹", "果"} <= set(keep) and why["single character"] > 0


def test_distill_recipe_validation(tmp_path):
    from m3e.distill.pipeline import load_distill_recipe

    bad = tmp_path / "r.yaml"
    bad.write_text("teacher: x\nsources: [{path: a.jsonl}]\ndistill: {pca: 3}\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown distill options"):
        load_distill_recipe(bad)
    bad.write_text("sources: [{path: a.jsonl}]\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing 'teacher'"):
        load_distill_recipe(bad)
    bad.write_text("teacher: x\n", encoding="utf-8")
    with pytest.raises(InputError, match="no sources"):
        load_distill_recipe(bad)
    bad.write_text("teacher: x\nsources: [{path: a.jsonl}]\nfilter_files: [x.csv]\n", encoding="utf-8")
    with pytest.raises(InputError, match="filter_files entry 0"):
        load_distill_recipe(bad)


def test_shipped_distill_recipe_reads_the_teachers_sources_without_their_caps():
    from m3e.distill.pipeline import load_distill_recipe

    recipe = load_distill_recipe(Path(__file__).resolve().parents[2] / "recipes" / "m3e-static-zh.yaml")
    assert recipe["teacher"] == "m3e-small-zh"
    assert not any("max_records" in s for s in recipe["sources"])
    assert {"stsb-en-train", "stsb-zh-train"} <= {s.get("name") for s in recipe["sources"]}


def test_distill_stack_imports_beside_transformers():
    """model2vec's distill extra and tokenlearn import together with the transformers this project runs on (a
    newer model2vec pins transformers < 5.4, whose import breaks beside the `kernels` package)."""
    import transformers
    from model2vec.distill import distill_from_model  # noqa: F401
    from sentence_transformers import SentenceTransformer  # noqa: F401
    from tokenlearn.train import train_model  # noqa: F401
    from transformers import PreTrainedModel  # noqa: F401

    assert int(transformers.__version__.split(".")[0]) >= 5


def test_corpus_roles_held_out_slice_and_sentences():
    from m3e.data.records import Record, Source
    from m3e.distill.corpus import build_corpus

    passage = "第一句话说的是天气很好。第二句话说的是我喜欢吃苹果！第三句很短。" * 2 + "最后一句没有句号但也够长了"
    qp = Source("qp", "pair", [Record(f"问题{i}", passage if i == 0 else f"答案{i}" * 20) for i in range(60)],
                doc_instruction="passage")
    sym = Source("sym", "scored", [Record(f"句子{i}", f"另一个句子{i}", [], float(i % 2)) for i in range(60)])
    corpus = build_corpus([qp, sym], fraction=0.2, sentences=True)
    roles = dict(zip(corpus.texts, corpus.roles, strict=True))
    assert roles["问题1"] == "query" and roles["句子1"] == roles["另一个句子1"] == "query"
    assert all(roles[t] == "passage" for t in corpus.texts if t.startswith("答案"))
    assert set(corpus.held_out) == {"qp", "sym"} and corpus.held_out["qp"]["roles"] == ["query", "passage"]
    held = {t for e in corpus.held_out.values() for a, p, _ in e["pairs"] for t in (a, p)}
    assert not held & set(corpus.texts) and not held & set(corpus.sentences)
    if passage in corpus.texts:  # the passage's record was not held out: its sentences follow the texts
        assert "第一句话说的是天气很好。" in corpus.sentences and "第三句很短。" not in corpus.sentences  # < 8 chars
        assert set(corpus.sentence_roles) == {"passage"}
    assert len(set(corpus.texts)) == len(corpus.texts) and not set(corpus.texts) & set(corpus.sentences)
    again = build_corpus([qp, sym], fraction=0.2, sentences=True)
    assert again.fingerprint() == corpus.fingerprint()  # the split is the same on every run
