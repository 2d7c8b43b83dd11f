"""The reranker against sentence-transformers' own CrossEncoder and a naive reference for windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m3e.errors import InputError, InputTooLong
from tests.conftest import SAMPLE

QUERY = "今天天气很好"
DOCS = [s for s in SAMPLE if s != QUERY and len(s) < 30]


def reference(reranker_dir, pairs):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(reranker_dir), device="cpu").predict(pairs, batch_size=3)


def test_scores_equal_cross_encoder_predict(tiny_reranker, tiny_reranker_dir):
    got = tiny_reranker.score(QUERY, DOCS, batch_size=4, max_batch_tokens=100)
    want = reference(tiny_reranker_dir, [(QUERY, d) for d in DOCS])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert got.min() < 0.3 and got.max() > 0.7  # the fixture's scores spread: the comparison means something
    raw = tiny_reranker.score(QUERY, DOCS, raw=True)
    np.testing.assert_allclose(1 / (1 + np.exp(-raw)), got, atol=1e-4)


def test_token_types_follow_the_tokenizer(tiny_reranker):
    unit = tiny_reranker.prepare(QUERY, ["我喜欢吃苹果"]).units[0]
    enc = tiny_reranker.tokenizer(QUERY, "我喜欢吃苹果", return_token_type_ids=True)
    assert unit.ids.tolist() == enc["input_ids"]
    assert unit.types.tolist() == enc["token_type_ids"]
    assert 1 in enc["token_type_ids"]  # the fixture's tokenizer marks the second text


def test_rank_sorts_high_to_low_with_input_order_on_ties(tiny_reranker):
    docs = DOCS + [DOCS[0]]
    ranked = tiny_reranker.rank(QUERY, docs, top_k=len(docs), return_documents=True)
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    ids = [r["corpus_id"] for r in ranked]
    assert ids.index(0) < ids.index(len(docs) - 1)  # the duplicate ties with the first copy, which comes first
    assert all(r["text"] == docs[r["corpus_id"]] for r in ranked)
    assert len(tiny_reranker.rank(QUERY, docs, top_k=2)) == 2


def test_long_document_is_scored_by_its_best_window(tiny_reranker):
    long = "".join(DOCS) * 3
    score = tiny_reranker.score(QUERY, [long])[0]
    stats = tiny_reranker.last_stats
    assert stats.windowed[0] >= 2 and not stats.truncated
    # naive reference: every window as its own document, the maximum wins
    prepared = tiny_reranker.prepare(QUERY, [long])
    singles = []
    for unit in prepared.units:
        feats = {k: torch.from_numpy(v) for k, v in tiny_reranker.features([unit]).items()}
        with torch.no_grad():
            singles.append(float(tiny_reranker.hf(**feats).logits[0, 0]))
    assert score == pytest.approx(1 / (1 + np.exp(-max(singles))), abs=1e-5)
    assert stats.best_window[0] == int(np.argmax(singles))
    # the windows cover the whole document, each fits the model, and consecutive windows overlap
    q = len(tiny_reranker.tokenize([QUERY])[0])
    content = [u.ids[1 + q + 1:-1].tolist() for u in prepared.units]
    doc_ids = tiny_reranker.tokenize([long])[0]
    assert all(len(u) <= tiny_reranker.max_length for u in prepared.units)
    assert content[0] == doc_ids[:len(content[0])] and content[-1] == doc_ids[-len(content[-1]):]


def test_truncate_and_error_modes(tiny_reranker):
    long = "".join(DOCS) * 3
    tiny_reranker.score(QUERY, ["短", long], truncate="truncate")
    assert tiny_reranker.last_stats.truncated == [1]
    with pytest.raises(InputTooLong, match="document 1"):
        tiny_reranker.score(QUERY, ["短", long], truncate="error")
    prepared = tiny_reranker.prepare(QUERY, [long], max_windows=1)
    assert len(prepared.units) == 1 and prepared.stats.truncated == [0]


@pytest.mark.parametrize("query, docs, says", [
    ("", ["a"], "query"),
    (QUERY, ["ok", ""], "item 1"),
    (QUERY, ["ok", None], "item 1"),
    (QUERY, ["ok", 3], "item 1"),
])
def test_bad_input_names_the_item(tiny_reranker, query, docs, says):
    with pytest.raises(InputError, match=says):
        tiny_reranker.score(query, docs)


def test_score_pairs_groups_by_query(tiny_reranker, tiny_reranker_dir):
    pairs = [(QUERY, DOCS[0]), ("我喜欢吃苹果", DOCS[1]), (QUERY, DOCS[2])]
    np.testing.assert_allclose(tiny_reranker.score_pairs(pairs), reference(tiny_reranker_dir, pairs), atol=1e-4)


def test_kinds_are_refused_in_the_wrong_place(tiny_reranker_dir, tiny_st_dir):
    from m3e import load_model, load_reranker
    from m3e.models.resolver import resolve

    assert resolve(str(tiny_reranker_dir)).role == "reranker"
    assert resolve(str(tiny_st_dir)).role == "embedder"
    with pytest.raises(InputError, match="is a reranker"):
        load_model(str(tiny_reranker_dir), device="cpu")
    with pytest.raises(InputError, match="is an embedding model"):
        load_reranker(str(tiny_st_dir), device="cpu")


def test_plain_sequence_classification_folder_is_a_reranker(tiny_reranker_dir, tmp_path):
    """How hub rerankers are published (bge-reranker: config.json + safetensors, no sentence-transformers files)."""
    import shutil

    from m3e import load_reranker

    plain = tmp_path / "plain"
    plain.mkdir()
    for f in tiny_reranker_dir.iterdir():
        if f.name not in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
            shutil.copy(f, plain / f.name)
    r = load_reranker(str(plain), device="cpu")
    want = reference(tiny_reranker_dir, [(QUERY, d) for d in DOCS])
    np.testing.assert_allclose(r.score(QUERY, DOCS), want, atol=1e-4)


def test_multi_label_cross_encoder_is_not_a_reranker(tiny_hf_dir, tmp_path):
    from sentence_transformers import CrossEncoder

    from m3e import load_reranker

    CrossEncoder(str(tiny_hf_dir), num_labels=3, device="cpu").save(str(tmp_path / "nli"))
    with pytest.raises(InputError, match="3 labels"):
        load_reranker(str(tmp_path / "nli"), device="cpu")


def test_onnx_backend_scores_equal_torch_and_the_guard_checks_rank_order(tiny_reranker_dir, monkeypatch):
    from m3e import load_reranker
    from m3e.errors import M3EError

    torch_scores = load_reranker(str(tiny_reranker_dir), device="cpu").score(QUERY, DOCS)
    r = load_reranker(str(tiny_reranker_dir), backend="onnx", threads=1)
    assert r.backend == "onnx" and r.label.endswith("@onnx")
    np.testing.assert_allclose(r.score(QUERY, DOCS), torch_scores, atol=1e-4)
    assert r.fidelity["mean_spearman"] > 0.999 and r.fidelity["top1_agree"].split("/")[0] != "0"
    assert r.max_length == load_reranker(str(tiny_reranker_dir), device="cpu").max_length
    on_torch = load_reranker(str(tiny_reranker_dir), device="cpu")
    for mode in ("window", "truncate"):  # the same length policy: windows and cuts as on torch
        long = ["".join(DOCS) * 3, DOCS[0]]
        np.testing.assert_allclose(r.score(QUERY, long, truncate=mode), on_torch.score(QUERY, long, truncate=mode),
                                   atol=1e-4)
    short = load_reranker(str(tiny_reranker_dir), backend="onnx", threads=1, max_length=24)  # the cached export
    assert short.max_length == 24 and type(short).__name__ == "OnnxReranker"
    monkeypatch.setenv("M3E_ONNX_MIN_RANK", "1.01")  # nothing reaches it: the guard must refuse
    with pytest.raises(M3EError, match="rank documents too differently"):
        load_reranker(str(tiny_reranker_dir), backend="onnx", threads=1)


def test_models_listing_says_which_folders_are_rerankers(tiny_reranker_dir, tiny_st_dir):
    from m3e.models.catalog import _folder_dim

    assert _folder_dim(tiny_reranker_dir) == "reranker"
    assert _folder_dim(tiny_st_dir) == 32


def test_score_groups_batches_queries_together_with_the_same_scores(tiny_reranker):
    long = "".join(DOCS) * 3
    groups = [(QUERY, DOCS[:3]), ("我喜欢吃苹果", [DOCS[3], long]), ("他在北京工作", DOCS[4:6])]
    together = tiny_reranker.score_groups(groups, batch_size=64)
    assert tiny_reranker.last_stats.documents == 7 and tiny_reranker.last_stats.batches == 1
    for (q, docs), got in zip(groups, together, strict=True):
        np.testing.assert_allclose(got, tiny_reranker.score(q, docs), atol=1e-4)


def test_an_exported_reranker_scores_without_torch(tiny_reranker_dir):
    """After the export, a fresh process scores with ONNX Runtime alone; the scores equal torch's."""
    import json
    import os
    import subprocess
    import sys

    from m3e import load_reranker

    ref = load_reranker(str(tiny_reranker_dir), device="cpu").score(QUERY, DOCS)
    load_reranker(str(tiny_reranker_dir), backend="onnx", threads=1)  # exported here (or already)
    code = ("import json, sys\n"
            "from m3e.models import load_reranker\n"
            f"r = load_reranker({str(tiny_reranker_dir)!r}, backend='onnx', threads=1)\n"
            f"s = r.score({QUERY!r}, {DOCS!r})\n"
            "heavy = [n for n in ('torch', 'sentence_transformers', 'transformers') if n in sys.modules]\n"
            "print(json.dumps({'heavy': heavy, 'scores': s.tolist()}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["heavy"] == []
    np.testing.assert_allclose(got["scores"], ref, atol=1e-4)
