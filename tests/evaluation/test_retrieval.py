"""Retrieval at corpus scale: blocked exact top-k against a full sort, distractors, the new built-in tasks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from m3e.errors import InputError
from m3e.evaluation.builtin import BUILTIN_TASKS, select_tasks
from m3e.evaluation.runner import EmbeddingMemo, evaluate, score_task
from m3e.evaluation.task_files import task_from_file
from m3e.evaluation.types.retrieval import (
    K_VALUES,
    RetrievalData,
    _desc_rank,
    ranking_scores,
    retrieval_scores,
    top_k,
)


def naive_top_k(q, d, k, ids):
    """Score every document, sort by (score desc, id desc): trec_eval's order."""
    out = []
    for row in q @ d.T:
        order = sorted(range(len(ids)), key=lambda j: (-row[j], tuple(-ord(c) for c in ids[j])))
        out.append(order[:k])
    return np.array(out)


@pytest.mark.parametrize(("q_block", "d_block", "k"), [(7, 13, 10), (64, 50, 40), (3, 1000, 200), (5, 9, 1000)])
def test_blocked_top_k_equals_full_sort_with_ties(q_block, d_block, k):
    rng = np.random.default_rng(q_block + d_block)
    # vectors on a coarse grid: many exactly equal scores, so block boundaries cut through ties
    q = rng.integers(-2, 3, size=(23, 4)).astype(np.float32)
    d = rng.integers(-2, 3, size=(157, 4)).astype(np.float32)
    ids = [f"doc{j:04d}" for j in rng.permutation(157)]
    got = top_k(q, d, k, _desc_rank(ids), q_block=q_block, d_block=d_block)
    np.testing.assert_array_equal(got, naive_top_k(q, d, min(k, 157), ids))


def test_retrieval_scores_equal_the_naive_path():
    """Vectorized gains and measures = the per-query id-list path on the same ranking."""
    rng = np.random.default_rng(4)
    q, d = rng.normal(size=(30, 8)), rng.normal(size=(400, 8))
    ids = [f"p{j}" for j in range(400)]
    qrels = [{f"p{j}": int(rng.integers(1, 4)) for j in rng.choice(400, size=int(rng.integers(1, 6)), replace=False)}
             for _ in range(30)]
    qn, dn = q / np.linalg.norm(q, axis=1, keepdims=True), d / np.linalg.norm(d, axis=1, keepdims=True)
    ranked = [[ids[j] for j in row] for row in naive_top_k(qn.astype(np.float32), dn.astype(np.float32), 400, ids)]
    expected = ranking_scores([r[:max(K_VALUES)] for r in ranked], qrels)
    got = retrieval_scores(q, d, ids, qrels)
    assert got.keys() == expected.keys()
    for name in got:
        assert got[name] == pytest.approx(expected[name], abs=1e-9), name


class Vectors:
    """Vectors = a topic centre ("3|...") + noise, a fixed function of the text: a copy gets the same vector."""

    name, dim, prompts = "vectors", 16, {"query": "query: ", "passage": "passage: "}

    def encode(self, texts, prompt="", **_):
        out = []
        for t in texts:
            noise = np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
            v = np.random.default_rng(1000 + int(t.split("|")[0])).normal(size=self.dim) * 2 + noise.normal(
                size=self.dim)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


def _toy(seed):
    rng = np.random.default_rng(seed)
    corpus = [f"{int(rng.integers(0, 5))}|passage {i}" for i in range(60)]
    ids = [f"d{i:02d}" for i in range(60)]
    queries, qrels = [], []
    for i in range(20):
        j = int(rng.integers(0, 60))
        queries.append(f"{corpus[j].split('|')[0]}|question {i}")
        qrels.append({ids[j]: int(rng.integers(1, 4))})
    return RetrievalData(queries, corpus, ids, qrels)


def _score(data):
    task = BUILTIN_TASKS["CSLRetrieval"]
    return score_task(task, data, EmbeddingMemo(Vectors()))[0]


@pytest.mark.parametrize("seed", range(5))
def test_distractors_never_raise_a_score(seed):
    base = _score(_toy(seed))
    rng = np.random.default_rng(100 + seed)
    more = _toy(seed)
    added = more.add_distractors([f"{int(rng.integers(0, 5))}|noise {i}" for i in range(80)], "noise.txt")
    assert added == 80 and more.distractors == {"noise.txt": 80}
    harder = _score(more)
    for name, value in base.items():
        assert harder[name] <= value + 1e-12, name


def test_copy_of_a_relevant_passage_is_not_added_twice():
    data = _toy(0)
    relevant = data.corpus[data.doc_ids.index(next(iter(data.qrels[0])))]
    before = _score(_toy(0))
    added = data.add_distractors([relevant, " " + relevant + "\n", "4|new one", "4|new one", "  "], "copies")
    assert added == 1
    assert data.dropped == {"distractor already in the corpus": 3, "empty distractor": 1}
    assert data.corpus[-1] == "4|new one" and len(data.corpus) == 61
    assert _score(data)["ndcg_at_10"] <= before["ndcg_at_10"]
    again = _toy(0)
    again.add_distractors([relevant, " " + relevant + "\n", "4|new one", "4|new one", "  "], "copies")
    assert again.corpus == data.corpus and again.doc_ids == data.doc_ids  # deterministic


def test_task_file_distractors_key_and_cli_flag(tmp_path, tiny_model):
    (tmp_path / "extra.txt").write_text("今天天气很好\n\n他在北京工作\n长文本长文本\n", encoding="utf-8")
    f = tmp_path / "r.jsonl"
    rows = [{"query": "天气", "pos": "今天天气很好"}, {"query": "苹果", "pos": "我喜欢吃苹果"},
            {"distractors": "extra.txt"}]
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    data = task_from_file(f).load(None)
    assert data.corpus == ["今天天气很好", "我喜欢吃苹果", "他在北京工作", "长文本长文本"]
    assert data.distractors == {"extra.txt": 2} and data.dropped == {"distractor already in the corpus": 1}
    f.write_text(json.dumps({"query": "a", "pos": "b"}) + "\n" + json.dumps({"distractors": ["nope.txt"]}) + "\n")
    with pytest.raises(InputError, match=r"r.jsonl:2: distractor file .*nope.txt does not exist"):
        task_from_file(f)

    plain = task_from_file(_write(tmp_path / "r2.jsonl", rows[:2]))
    harder = plain.with_distractors([tmp_path / "extra.txt"])
    assert harder.name == "r2+extra"
    results = evaluate(tiny_model, [plain, harder], tmp_path, tmp_path / "out")
    assert results[1]["distractors"] == {"extra.txt": 2} and "distractors" not in results[0]
    assert results[1]["main_score"] <= results[0]["main_score"]
    with pytest.raises(InputError, match="distractors only join retrieval corpora"):
        BUILTIN_TASKS["ATEC"].with_distractors([tmp_path / "extra.txt"])


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_unknown_prompt_names_are_errors(tiny_model):
    memo = EmbeddingMemo(tiny_model)
    with pytest.raises(InputError, match="has no prompt named 'doc'.*passage, query"):
        memo.encode(["今天天气很好"], "doc")
    # a type's conventional names are optional: a model without them encodes with no prompt
    np.testing.assert_allclose(memo.encode(["今天天气很好"], "doc", optional=True),
                               tiny_model.encode(["今天天气很好"]), atol=1e-6)


def test_s2c_category_is_selectable():
    assert [t.name for t in select_tasks(category="s2c")] == ["LeetCodeRetrieval"]


NEW_TASKS = {  # queries, corpus, relevant pairs, dropped: from each dataset's SOURCE.md
    "MedicalQTRRetrieval": (6_319, 26_751, 22_710, {"(query, title) pair listed twice": 2,
                                                   "query with no title graded above 0": 746}),
    "LCSTSRetrieval": (1_993, 1_994, 1_994, {"repeated row merged": 6}),
    "CMRC2018RetrievalHard": (3_219, 9_583, 3_219, {"distractor already in the corpus": 54}),
    "LeetCodeRetrieval": (3_483, 3_455, 3_483, {"same code as another problem (merged)": 28}),
}


@pytest.mark.parametrize("name", list(NEW_TASKS))
def test_new_retrieval_tasks_on_the_real_files(shared_data, name):
    n_q, n_docs, n_rel, dropped = NEW_TASKS[name]
    data = BUILTIN_TASKS[name].load(shared_data)
    assert (len(data.queries), len(data.corpus), sum(len(r) for r in data.qrels)) == (n_q, n_docs, n_rel)
    assert data.dropped == dropped
    assert len(set(data.doc_ids)) == len(data.doc_ids)
    assert all(r and all(d in set(data.doc_ids) and g > 0 for d, g in r.items()) for r in data.qrels)
    if name == "MedicalQTRRetrieval":
        grades = [g for r in data.qrels for g in r.values()]
        assert set(grades) == {1, 2, 3}
    if name == "CMRC2018RetrievalHard":
        assert data.distractors["cmrc2018_trial.json"] == 256
        assert data.corpus[:848] == BUILTIN_TASKS["CMRC2018Retrieval"].load(shared_data).corpus


def test_two_stage_equals_the_naive_rerank_of_the_first_stages_candidates():
    """First stage: exact top-N by one model; second: those N re-ordered by another model's cosine (ties by id
    descending); measured exactly as the id-list path measures that ranking."""
    from m3e.evaluation.types.retrieval import two_stage_scores

    rng = np.random.default_rng(7)
    q1, d1 = rng.normal(size=(20, 6)).astype(np.float32), rng.normal(size=(300, 6)).astype(np.float32)
    q2 = rng.integers(-2, 3, size=(20, 3)).astype(np.float32)  # coarse: ties in the second stage
    d2 = rng.integers(-2, 3, size=(300, 3)).astype(np.float32)
    ids = [f"p{j:03d}" for j in rng.permutation(300)]
    qrels = [{ids[j]: 1 for j in rng.choice(300, size=3, replace=False)} for _ in range(20)]
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    first = naive_top_k(unit(q1), unit(d1), 50, ids)
    ranked = []
    for qi, cands in enumerate(first):
        s = np.round(unit(d2)[cands] @ unit(q2)[qi], 6)
        order = sorted(range(len(cands)), key=lambda j: (-s[j], tuple(-ord(c) for c in ids[cands[j]])))
        ranked.append([ids[cands[j]] for j in order])
    expected = ranking_scores(ranked, qrels)
    got = two_stage_scores((q1, d1), (q2, d2), ids, qrels, candidates=50)
    for name in ("ndcg_at_10", "map_at_100", "recall_at_20", "mrr_at_10", "recall_at_1000"):
        assert got[name] == pytest.approx(expected[name], abs=1e-9), name
    # a second stage identical to the first changes nothing within the candidates
    same = two_stage_scores((q1, d1), (q1, d1), ids, qrels, candidates=50)
    plain = retrieval_scores(q1, d1, ids, qrels)
    assert same["ndcg_at_10"] == pytest.approx(plain["ndcg_at_10"], abs=1e-9)


def test_evaluate_with_a_second_stage_files_it_apart(tmp_path, tiny_model, tiny_st_dir):
    from m3e import load_model

    task_file = tmp_path / "r.jsonl"
    rows = [{"query": q, "pos": [p]} for q, p in [("天气", "今天天气很好"), ("苹果", "我喜欢吃苹果"),
                                                  ("电影", "这部电影很好看"), ("北京", "他在北京工作")]]
    task_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    task = task_from_file(task_file)
    other = load_model(str(tiny_st_dir))
    first, res = evaluate(tiny_model, [task], tmp_path, tmp_path / "out", rescore=other, candidates=2)
    assert res["model"] == f"{tiny_model.name}>{other.name}@2"
    assert first["model"] == tiny_model.name  # the first stage alone, beside it
    assert (tmp_path / "out" / "summary.md").read_text().count(">") >= 1
    sts = select_tasks(["STSB"])
    with pytest.raises(InputError, match="Retrieval tasks only"):
        evaluate(tiny_model, sts, tmp_path, tmp_path / "out2", rescore=other)


def test_a_reranker_ranks_reranking_candidates_and_the_first_stage(tmp_path, tiny_model, tiny_reranker):
    """Reranking tasks: the reranker's order of each query's candidates; retrieval: the first stage's top k
    re-ordered by the reranker. Both against a naive reference built from the reranker's own scores."""
    from m3e.evaluation.types.reranking import RerankingData
    from m3e.evaluation.types.retrieval import ranking_scores

    queries = ["今天天气", "苹果", "北京"]
    cands = [["今天天气很好", "我喜欢吃苹果", "这部电影很好看"], ["我喜欢吃苹果", "机器学习很有趣", "他在北京工作"],
             ["他在北京工作", "今天阳光明媚", "这部电影很好看"]]
    rel = [[1, 0, 0], [1, 0, 0], [1, 0, 1]]
    rr_file = tmp_path / "rr.jsonl"
    rr_file.write_text("".join(json.dumps({"query": q, "pos": [c[i] for i in range(3) if r[i]],
                                           "neg": [c[i] for i in range(3) if not r[i]]}, ensure_ascii=False) + "\n"
                               for q, c, r in zip(queries, cands, rel, strict=True)), encoding="utf-8")
    task = task_from_file(rr_file)
    first, second = evaluate(tiny_model, [task], tmp_path, tmp_path / "out", rescore=tiny_reranker)
    assert first["model"] == tiny_model.name and second["model"] == tiny_reranker.name
    data = task.load(tmp_path)
    assert isinstance(data, RerankingData)
    ranked = []
    for q, texts in zip(data.queries, data.candidates, strict=True):
        s = tiny_reranker.score(q, texts)
        ranked.append([str(j) for j in sorted(range(len(texts)), key=lambda j: (-round(float(s[j]), 6), -j))])
    qrels = [{str(j): 1 for j, r in enumerate(rr) if r} for rr in data.relevance]
    assert second["scores"] == pytest.approx(ranking_scores(ranked, qrels))

    ret_file = tmp_path / "ret.jsonl"
    pairs = [("天气", "今天天气很好"), ("苹果", "我喜欢吃苹果"), ("电影", "这部电影很好看"), ("北京", "他在北京工作")]
    ret_file.write_text("".join(json.dumps({"query": q, "pos": [p]}, ensure_ascii=False) + "\n" for q, p in pairs),
                        encoding="utf-8")
    ret = task_from_file(ret_file)
    _, two = evaluate(tiny_model, [ret], tmp_path, tmp_path / "out3", rescore=tiny_reranker, candidates=3)
    assert two["model"] == f"{tiny_model.name}>{tiny_reranker.name}@3"
    data = ret.load(tmp_path)
    q = tiny_model.encode(data.queries, prompt_name="query")
    d = tiny_model.encode(data.corpus, prompt_name="passage")
    ranked = []
    for i, query in enumerate(data.queries):
        sims = d @ q[i]
        top = sorted(range(len(d)), key=lambda j: (-sims[j], data.doc_ids[j]), reverse=False)[:3]
        s = tiny_reranker.score(query, [data.corpus[j] for j in top])
        order = sorted(range(3), key=lambda k: (-round(float(s[k]), 6), data.doc_ids[top[k]]), reverse=False)
        ranked.append([data.doc_ids[top[k]] for k in order])
    assert two["scores"]["ndcg_at_10"] == pytest.approx(ranking_scores(ranked, data.qrels)["ndcg_at_10"])
    with pytest.raises(InputError, match="Retrieval and Reranking tasks only"):
        evaluate(tiny_model, select_tasks(["STSB"]), tmp_path, tmp_path / "out2", rescore=tiny_reranker)


def test_bm25_baseline_equals_a_naive_ranking():
    """The lexical baseline: bm25s scores over jieba words, ties by id descending, measured like every run."""
    from m3e.evaluation.lexical import bm25_rankings
    from m3e.search.bm25 import BM25, words

    corpus = ["今天天气很好", "我喜欢吃苹果", "苹果手机很好用", "北京今天下雨", "机器学习很有趣", "天气预报说明天晴"]
    ids = [f"d{j}" for j in (5, 1, 4, 0, 3, 2)]
    queries = ["今天天气", "苹果", "学习"]
    got = bm25_rankings(queries, corpus, ids)
    index = BM25(list(range(len(corpus))), [words(t) for t in corpus])
    for q, ranked in zip(queries, got, strict=True):
        s = index.model.get_scores(words(q))
        order = sorted((j for j in range(len(corpus)) if s[j] > 0),
                       key=lambda j: (-s[j], tuple(-ord(c) for c in ids[j])))
        assert ranked == [ids[j] for j in order]


def test_eval_bm25_through_the_cli(tmp_path):
    from m3e.evaluation.lexical import bm25_rankings
    from tests.test_cli import run

    task_file = tmp_path / "r.jsonl"
    rows = [{"query": q, "pos": [p]} for q, p in [("天气怎么样", "今天天气很好"), ("苹果好吃吗", "我喜欢吃苹果"),
                                                  ("电影", "这部电影很好看"), ("北京工作", "他在北京工作")]]
    task_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    r = run("eval", "--task-file", str(task_file), "--bm25", "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    [result] = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*/*.json")]
    data = task_from_file(task_file).load(tmp_path)
    want = ranking_scores(bm25_rankings(data.queries, data.corpus, data.doc_ids), data.qrels)
    assert result["model"] == "bm25-jieba" and result["main_score"] == pytest.approx(want["ndcg_at_10"])
    r = run("eval", "--tasks", "STSB", "--bm25", "--data-dir", str(tmp_path), "-o", str(tmp_path / "o2"))
    assert r.returncode == 2 and "retrieval tasks only" in r.stderr
