"""Our scorers equal the `mteb` package's own evaluators on the same data and the same fixed vectors.

For every task type we load a task into one of mteb's mock task classes (real mteb evaluation code, no hub),
run ``task.evaluate`` through our mteb adapter around a fake embedder whose vectors are a fixed function of
(prompt, text), and run our runner on the same records with the same embedder. Every metric both report must
agree to 1e-6 (mteb rounds retrieval metrics to 5 decimals, so those agree to 5e-6; the unrounded values are
checked against pytrec_eval directly).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")
pytrec_eval = pytest.importorskip("pytrec_eval")
from datasets import Dataset, DatasetDict  # noqa: E402

from m3e.evaluation.mteb_adapter import MtebEncoder  # noqa: E402
from m3e.evaluation.runner import EmbeddingMemo, score_task  # noqa: E402
from m3e.evaluation.tasks import Task  # noqa: E402
from m3e.evaluation.types import MAIN_SCORES  # noqa: E402
from m3e.evaluation.types.bitext import BitextData  # noqa: E402
from m3e.evaluation.types.classification import LabelledData, undersample_indices  # noqa: E402
from m3e.evaluation.types.reranking import RerankingData  # noqa: E402
from m3e.evaluation.types.retrieval import RetrievalData, _desc_rank, rank_order, ranking_scores  # noqa: E402
from m3e.evaluation.types.sts import PairData  # noqa: E402

DIM = 16


class FakeEmbedder:
    """Vectors = label centre (texts look like 'c3|...') + noise, both a fixed function of prompt and text."""

    name = "fake"
    dim = DIM
    prompts = {"query": "query: ", "passage": "passage: "}
    device = "cpu"
    max_length = 512

    def __init__(self, st_model):
        self.model = st_model  # only for mteb's model metadata
        self.calls = []

    def encode(self, texts, prompt="", **_):
        self.calls.append((prompt, len(texts)))
        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(f"{prompt}|{t}".encode()).digest()[:8], "little")
            noise = np.random.default_rng(seed).normal(size=DIM)
            centre = np.zeros(DIM)
            if t.startswith("c") and "|" in t:
                k = int(t[1:t.index("|")])
                centre = np.random.default_rng(1000 + k).normal(size=DIM) * 1.5
            v = centre + noise
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


@pytest.fixture(scope="module")
def fake(tiny_model):
    return FakeEmbedder(tiny_model.model)


def ours(task_type: str, data, fake, **params) -> dict:
    task = Task("t", task_type, "s2s", "", MAIN_SCORES[task_type], lambda root: data, params=params)
    scores, _ = score_task(task, data, EmbeddingMemo(fake))
    return scores


def theirs(task, fake, split="test") -> dict:
    task.data_loaded = True
    out = task.evaluate(MtebEncoder(fake), split, encode_kwargs={})
    return next(iter(out.values()))


def assert_agree(a: dict, b: dict, must: set[str], tol: float = 1e-6) -> None:
    shared = {k for k in a if k in b and isinstance(b[k], (int, float)) and b[k] is not None}
    assert must <= shared, f"missing {must - shared}"
    for k in sorted(shared):
        assert a[k] == pytest.approx(float(b[k]), abs=tol), k


def _pairs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    s1, s2, gold = [], [], []
    for i in range(n):
        k, same = int(rng.integers(0, 6)), bool(rng.random() < 0.5)
        s1.append(f"c{k}|a{i}")
        s2.append(f"c{k if same else (k + 1) % 6}|b{i}")
        gold.append(float(rng.integers(3, 6) if same else rng.integers(0, 3)))
    return s1, s2, gold


def test_sts_equals_mteb(fake):
    from mteb.mocks.mock_tasks.sts import MockSTSTask

    s1, s2, gold = _pairs()
    task = MockSTSTask()
    task.min_score, task.max_score = 0, 5
    task.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": s1, "sentence2": s2, "score": gold})})
    assert_agree(ours("STS", PairData(s1, s2, gold), fake), theirs(task, fake),
                 {"cosine_spearman", "cosine_pearson", "euclidean_spearman", "manhattan_spearman"})


def test_pair_classification_equals_mteb(fake):
    from mteb.mocks.mock_tasks.pair_classification import MockPairClassificationTask

    s1, s2, gold = _pairs(seed=1)
    labels = [int(g >= 3) for g in gold]
    task = MockPairClassificationTask()
    task.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": s1, "sentence2": s2, "labels": labels})})
    mine = ours("PairClassification", PairData(s1, s2, [float(x) for x in labels]), fake)
    assert_agree(mine, theirs(task, fake), {"max_ap", "max_accuracy", "max_f1", "cosine_ap", "cosine_accuracy",
                                            "cosine_f1", "euclidean_ap", "manhattan_accuracy", "dot_f1"})


@pytest.mark.parametrize("n_labels", [2, 5])
def test_classification_equals_mteb(fake, n_labels):
    from mteb.mocks.mock_tasks.classification import MockClassificationTask

    rng = np.random.default_rng(n_labels)

    def rows(n, tag):
        labels = [int(x) for x in rng.integers(0, n_labels, size=n)]
        return [f"c{k}|{tag}{i}" for i, k in enumerate(labels)], labels

    train_t, train_l = rows(300, "tr")
    test_t, test_l = rows(150, "te")
    task = MockClassificationTask()
    task.samples_per_label = 32
    task.dataset = DatasetDict({"train": Dataset.from_dict({"text": train_t, "label": train_l}),
                                "test": Dataset.from_dict({"text": test_t, "label": test_l})})
    data = LabelledData(test_t, test_l, train_t, train_l)
    must = {"accuracy", "f1", "f1_weighted", "precision", "recall"} | ({"ap"} if n_labels == 2 else set())
    assert_agree(ours("Classification", data, fake, samples_per_label=32, n_experiments=10), theirs(task, fake),
                 must)


def test_undersampling_equals_mteb():
    from mteb.abstasks.classification import AbsTaskClassification

    labels = [int(x) for x in np.random.default_rng(3).integers(0, 4, size=200)]
    ds = Dataset.from_dict({"label": labels})

    class Ns:
        seed, samples_per_label, label_column_name = 42, 8, "label"

    idxs, expected = None, []
    for i in range(10):
        _, idxs, chosen = AbsTaskClassification._undersample_data(Ns(), ds, i, idxs)
        expected.append(chosen)
    assert undersample_indices(labels, 8, 10, 42) == expected


def test_clustering_equals_mteb(fake):
    from mteb.mocks.mock_tasks.clustering import LegacyMockClusteringFastTask

    rng = np.random.default_rng(7)
    labels = [int(x) for x in rng.integers(0, 5, size=240)]
    texts = [f"c{k}|doc{i}" for i, k in enumerate(labels)]
    task = LegacyMockClusteringFastTask()
    task.max_document_to_embed, task.max_documents_per_cluster, task.n_clusters = 200, 150, 10
    task.dataset = DatasetDict({"test": Dataset.from_dict({"sentences": texts, "labels": labels})})
    mine = ours("Clustering", LabelledData(texts, [str(x) for x in labels]), fake, max_documents=200,
                sample_size=150, n_samples=10)
    assert_agree(mine, theirs(task, fake), {"v_measure", "v_measure_std", "ami"})


def _retrieval_records(seed=11, n_docs=60, n_queries=25, grades=(1, 3)):
    rng = np.random.default_rng(seed)
    doc_ids = [f"doc{i:03d}" for i in range(n_docs)]
    doc_k = [int(x) for x in rng.integers(0, 8, size=n_docs)]
    corpus = [f"c{k}|passage {i}" for i, k in enumerate(doc_k)]
    queries, qrels = [], []
    for q in range(n_queries):
        k = int(rng.integers(0, 8))
        same = [d for d, dk in zip(doc_ids, doc_k, strict=True) if dk == k]
        rel = {d: int(rng.integers(*grades)) for d in rng.choice(same, size=min(len(same), 3), replace=False)}
        queries.append(f"c{k}|question {q}")
        qrels.append(rel)
    return queries, corpus, doc_ids, qrels


def _retrieval_split(queries, corpus, doc_ids, qrels, top_ranked=None):
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    return RetrievalSplitData(
        queries=Dataset.from_list([{"id": f"q{i}", "text": q} for i, q in enumerate(queries)]),
        corpus=Dataset.from_list([{"id": d, "text": t} for d, t in zip(doc_ids, corpus, strict=True)]),
        relevant_docs={f"q{i}": rel for i, rel in enumerate(qrels)},
        top_ranked=top_ranked,
    )


@pytest.mark.parametrize("grades", [(1, 3), (0, 4)], ids=["binary-ish", "graded-0-3"])
def test_retrieval_equals_mteb_and_pytrec_eval(fake, grades):
    """Grades 0-3 as in KUAKE-QTR: 0 = listed but not relevant; 1-3 are nDCG gains."""
    from mteb.mocks.mock_tasks.retrieval import MockRetrievalTask

    # 300 documents; seed 19 leaves no two scores of a query within 1e-6, where float32 cosine (mteb, torch)
    # and our numpy products could order a near-tie differently
    queries, corpus, doc_ids, qrels = _retrieval_records(seed=19, n_docs=300, n_queries=40, grades=grades)
    gaps = np.diff(np.sort(fake.encode(queries, prompt="query: ") @ fake.encode(corpus, prompt="passage: ").T), axis=1)
    assert gaps.min() > 1e-6
    mine = ours("Retrieval", RetrievalData(queries, corpus, doc_ids, [{d: g for d, g in r.items() if g > 0}
                                                                       for r in qrels]), fake)
    task = MockRetrievalTask()
    task.dataset = {"default": {"test": _retrieval_split(queries, corpus, doc_ids, qrels)}}
    must = {"ndcg_at_10", "map_at_10", "recall_at_10", "precision_at_10", "mrr_at_10", "ndcg_at_1000",
            "map_at_1000", "hit_rate_at_5"}
    assert_agree(mine, theirs(task, fake), must, tol=5e-6)

    # unrounded: pytrec_eval on the full run (every document scored)
    q = fake.encode(queries, prompt="query: ")
    d = fake.encode(corpus, prompt="passage: ")
    run = {f"q{i}": {doc_ids[j]: float(s) for j, s in enumerate(q[i] @ d.T)} for i in range(len(queries))}
    ev = pytrec_eval.RelevanceEvaluator({f"q{i}": r for i, r in enumerate(qrels)},
                                        {"ndcg_cut.1,3,10,100", "map_cut.1,10,100", "recall.1,10,100", "P.1,10"})
    per_q = ev.evaluate(run)
    for ours_name, trec in (("ndcg_at_1", "ndcg_cut_1"), ("ndcg_at_3", "ndcg_cut_3"), ("ndcg_at_10", "ndcg_cut_10"),
                            ("ndcg_at_100", "ndcg_cut_100"), ("map_at_1", "map_cut_1"), ("map_at_10", "map_cut_10"),
                            ("map_at_100", "map_cut_100"), ("recall_at_1", "recall_1"),
                            ("recall_at_10", "recall_10"), ("recall_at_100", "recall_100"),
                            ("precision_at_1", "P_1"), ("precision_at_10", "P_10")):
        expected = np.mean([per_q[k][trec] for k in per_q])
        assert mine[ours_name] == pytest.approx(expected, abs=1e-6), ours_name


def test_ranking_tie_break_matches_pytrec_eval():
    """Equal scores: trec_eval orders by document id descending; so do we."""
    ids = ["a", "b", "c", "d"]
    scores = np.array([0.5, 0.5, 0.9, 0.5])
    order = [ids[j] for j in rank_order(scores, _desc_rank(ids), 4)]
    assert order == ["c", "d", "b", "a"]
    qrels = {"q": {"a": 1}}
    run = {"q": {i: float(s) for i, s in zip(ids, scores, strict=True)}}
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.3,10", "map_cut.10"}).evaluate(run)["q"]
    mine = ranking_scores([order], [qrels["q"]], k_values=(3, 10))
    assert mine["ndcg_at_3"] == pytest.approx(trec["ndcg_cut_3"]) and mine["ndcg_at_3"] == 0
    assert mine["ndcg_at_10"] == pytest.approx(trec["ndcg_cut_10"])
    assert mine["map_at_10"] == pytest.approx(trec["map_cut_10"])


def test_reranking_equals_mteb(fake):
    from mteb.mocks.mock_tasks.reranking import MockRerankingTask

    queries, corpus, doc_ids, qrels = _retrieval_records(seed=5, n_docs=80, n_queries=20)
    rng = np.random.default_rng(5)
    by_id = dict(zip(doc_ids, corpus, strict=True))
    top_ranked, cands, rel = {}, [], []
    for i, r in enumerate(qrels):
        others = [d for d in rng.choice(doc_ids, size=12, replace=False) if d not in r]
        ids = list(r) + others
        rng.shuffle(ids)
        top_ranked[f"q{i}"] = ids
        cands.append([by_id[d] for d in ids])
        rel.append([r.get(d, 0) for d in ids])
    mine = ours("Reranking", RerankingData(queries, cands, rel), fake)
    task = MockRerankingTask()
    task.dataset = {"default": {"test": _retrieval_split(queries, corpus, doc_ids, qrels, top_ranked)}}
    assert_agree(mine, theirs(task, fake), {"map_at_1000", "mrr_at_10", "ndcg_at_10"}, tol=5e-6)


def test_bitext_equals_mteb(fake):
    from mteb.mocks.mock_tasks.bitext_mining import MockBitextMiningTask

    rng = np.random.default_rng(9)
    ks = [int(x) for x in rng.integers(0, 40, size=150)]
    s1 = [f"c{k}|zh {i}" for i, k in enumerate(ks)]
    s2 = [f"c{k}|en {i}" for i, k in enumerate(ks)]
    task = MockBitextMiningTask()
    task.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": s1, "sentence2": s2})})
    mine = ours("BitextMining", BitextData(s1, s2), fake)
    assert 0.05 < mine["accuracy"] < 0.95  # a non-trivial case
    assert_agree(mine, theirs(task, fake), {"f1", "accuracy", "precision", "recall"})


def test_run_mteb_task_writes_our_result_format(tiny_model):
    from mteb.mocks.mock_tasks.sts import MockSTSTask

    from m3e.evaluation.mteb_adapter import run_mteb_task

    task = MockSTSTask()
    task.load_data()
    result = run_mteb_task(task, tiny_model, "ATEC", "s2s")
    assert result["task"] == "ATEC" and result["model"] == tiny_model.name
    assert result["main_score_name"] == "cosine_spearman"
    assert result["main_score"] == result["scores"]["cosine_spearman"]
