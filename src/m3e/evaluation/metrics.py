"""Task scores, defined exactly as MTEB defines them (same similarity functions, thresholds, ties).

Pure functions of embeddings and labels: no model, no I/O. Each is tested against a naive transcription
of MTEB's evaluator and the reference libraries it uses (scipy, scikit-learn).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import average_precision_score
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances


def _similarities(a: np.ndarray, b: np.ndarray) -> dict[str, tuple[np.ndarray, bool]]:
    """name -> (scores, higher_means_more_similar), as MTEB computes them."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return {
        "cosine": (1 - paired_cosine_distances(a, b), True),
        "manhattan": (paired_manhattan_distances(a, b), False),
        "euclidean": (paired_euclidean_distances(a, b), False),
        "dot": (np.einsum("ij,ij->i", a, b), True),
    }


def sts_scores(a: np.ndarray, b: np.ndarray, gold) -> dict[str, float]:
    """Pearson and Spearman of each similarity against gold scores; main score: cosine_spearman."""
    gold = np.asarray(gold, dtype=np.float64)
    out: dict[str, float] = {}
    for name, (scores, higher) in _similarities(a, b).items():
        s = scores if higher else -scores
        out[f"{name}_pearson"] = float(pearsonr(gold, s).statistic)
        out[f"{name}_spearman"] = float(spearmanr(gold, s).statistic)
    return out


def best_accuracy_threshold(scores: np.ndarray, labels: np.ndarray, higher: bool) -> tuple[float, float]:
    """MTEB's sweep: sort by score (stable), predict positive for the head, best accuracy wins (first max)."""
    order = np.argsort(-scores if higher else scores, kind="stable")
    s, y = scores[order], labels[order]
    n = len(y)
    if n < 2:
        return 0.0, -1.0
    pos_so_far = np.cumsum(y[:-1] == 1)
    neg_remaining = int(np.sum(y == 0)) - np.cumsum(y[:-1] == 0)
    acc = (pos_so_far + neg_remaining) / n
    i = int(np.argmax(acc))
    if acc[i] <= 0:
        return 0.0, -1.0
    return float(acc[i]), float((s[i] + s[i + 1]) / 2)


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray, higher: bool) -> tuple[float, float, float, float]:
    """(f1, precision, recall, threshold) as MTEB's sweep finds them (first maximum)."""
    order = np.argsort(-scores if higher else scores, kind="stable")
    s, y = scores[order], labels[order]
    total_pos = int(np.sum(labels == 1))
    if len(y) < 2 or total_pos == 0:
        return 0.0, 0.0, 0.0, 0.0
    extracted = np.arange(1, len(y))
    correct = np.cumsum(y[:-1] == 1)
    precision = correct / extracted
    recall = correct / total_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(correct > 0, 2 * precision * recall / (precision + recall), 0.0)
    i = int(np.argmax(f1))
    if f1[i] <= 0:
        return 0.0, 0.0, 0.0, 0.0
    return float(f1[i]), float(precision[i]), float(recall[i]), float((s[i] + s[i + 1]) / 2)


def pair_classification_scores(a: np.ndarray, b: np.ndarray, labels) -> dict[str, float]:
    """Accuracy, F1 (best threshold) and AP for each similarity, plus the max over similarities."""
    labels = np.asarray(labels).astype(int)
    out: dict[str, float] = {}
    for name, (scores, higher) in _similarities(a, b).items():
        acc, acc_t = best_accuracy_threshold(scores, labels, higher)
        f1, p, r, f1_t = best_f1_threshold(scores, labels, higher)
        ap = average_precision_score(labels, scores if higher else -scores)
        out.update({f"{name}_accuracy": acc, f"{name}_accuracy_threshold": acc_t, f"{name}_f1": f1,
                    f"{name}_precision": p, f"{name}_recall": r, f"{name}_f1_threshold": f1_t,
                    f"{name}_ap": float(ap)})
    for metric in ("accuracy", "f1", "precision", "recall", "ap"):
        out[f"max_{metric}"] = max(out[f"{n}_{metric}"] for n in ("cosine", "manhattan", "euclidean", "dot"))
    return out


# --- Classification -------------------------------------------------------------------------------------------

def undersample_indices(labels, samples_per_label: int, n_experiments: int, seed: int = 42) -> list[list[int]]:
    """Training rows of each experiment, as MTEB draws them.

    MTEB reshuffles one index list in place with a fresh ``RandomState(seed)`` per experiment (so experiment i
    sees the permutation applied i+1 times), then keeps the first ``samples_per_label`` rows of each label.
    """
    idxs = list(range(len(labels)))
    out = []
    for _ in range(n_experiments):
        np.random.RandomState(seed).shuffle(idxs)
        count: dict = {}
        chosen = []
        for i in idxs:
            if count.get(labels[i], 0) < samples_per_label:
                chosen.append(i)
                count[labels[i]] = count.get(labels[i], 0) + 1
        out.append(chosen)
    return out


def classification_scores(train_emb: np.ndarray, train_labels, test_emb: np.ndarray, test_labels, *,
                          samples_per_label: int = 32, n_experiments: int = 10, seed: int = 42,
                          max_iter: int = 100) -> dict[str, float]:
    """Linear probe: LogisticRegression on undersampled train rows, averaged over experiments."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    names = {v: i for i, v in enumerate(sorted(set(train_labels) | set(test_labels)))}  # order kept: same classes_
    train_labels = np.array([names[v] for v in train_labels])
    test_labels = np.array([names[v] for v in test_labels])
    binary = len(np.unique(test_labels)) == 2
    runs = []
    with warnings.catch_warnings():  # LR at max_iter=100 and classes never predicted warn every run, as in MTEB
        warnings.simplefilter("ignore")
        for chosen in undersample_indices(list(train_labels), samples_per_label, n_experiments, seed):
            clf = LogisticRegression(max_iter=max_iter, random_state=seed)
            clf.fit(train_emb[chosen], train_labels[chosen])
            pred = clf.predict(test_emb)
            run = {
                "accuracy": accuracy_score(test_labels, pred),
                "f1": f1_score(test_labels, pred, average="macro"),
                "f1_weighted": f1_score(test_labels, pred, average="weighted"),
                "precision": precision_score(test_labels, pred, average="macro"),
                "precision_weighted": precision_score(test_labels, pred, average="weighted"),
                "recall": recall_score(test_labels, pred, average="macro"),
                "recall_weighted": recall_score(test_labels, pred, average="weighted"),
            }
            if binary:  # MTEB scores AP on the hard predictions
                run["ap"] = average_precision_score(test_labels, pred, average="macro")
                run["ap_weighted"] = average_precision_score(test_labels, pred, average="weighted")
            runs.append(run)
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


# --- Clustering -----------------------------------------------------------------------------------------------

def clustering_scores(embeddings: np.ndarray, labels, *, max_documents: int | None = 2048,
                      sample_size: int = 16_384, n_samples: int = 10, batch_size: int = 512,
                      seed: int = 42) -> dict[str, float]:
    """MTEB's (v2, "fast") clustering: MiniBatchKMeans with k = #labels on bootstrap samples; mean V-measure."""
    import random

    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics.cluster import adjusted_mutual_info_score, v_measure_score

    rng = random.Random(seed)
    embeddings = np.asarray(embeddings)
    labels = np.asarray(labels)
    if max_documents is not None:
        keep = rng.sample(range(len(labels)), k=min(len(labels), max_documents))
        embeddings, labels = embeddings[keep], labels[keep]
    model = MiniBatchKMeans(n_clusters=np.unique(labels).size, batch_size=batch_size, init="k-means++", n_init=1,
                            random_state=seed)
    v, ami = [], []
    for _ in range(n_samples):
        pick = rng.choices(range(len(labels)), k=sample_size)
        assigned = model.fit_predict(embeddings[pick])
        v.append(float(v_measure_score(labels[pick], assigned)))
        ami.append(float(adjusted_mutual_info_score(labels[pick], assigned)))
    return {"v_measure": float(np.mean(v)), "v_measure_std": float(np.std(v)), "ami": float(np.mean(ami)),
            "ami_std": float(np.std(ami))}


# --- Retrieval and reranking ----------------------------------------------------------------------------------

K_VALUES = (1, 3, 5, 10, 20, 100, 1000)


def rank_order(scores: np.ndarray, ids_desc_rank: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` best scores, ties broken by document id descending (trec_eval's order)."""
    order = np.lexsort((-ids_desc_rank, -scores))
    return order[:top]


def ranking_scores(ranked: list[list[str]], qrels: list[dict[str, int]],
                   k_values=K_VALUES) -> dict[str, float]:
    """nDCG@k, MAP@k, recall@k, P@k, hit rate@k (trec_eval's definitions, as pytrec_eval computes them) and
    MRR@k (MTEB's), averaged over queries. ``ranked[q]`` is query q's ranked document ids."""
    sums: dict[str, float] = {}
    for ids, rels in zip(ranked, qrels, strict=True):
        gains = np.array([max(rels.get(d, 0), 0) for d in ids], dtype=np.float64)
        hit = gains > 0
        n_rel = sum(1 for r in rels.values() if r > 0)
        ideal = np.sort(np.array([r for r in rels.values() if r > 0], dtype=np.float64))[::-1]
        disc = 1.0 / np.log2(np.arange(2, len(ids) + 2))
        dcg = np.cumsum(gains * disc)
        idcg = np.cumsum(ideal / np.log2(np.arange(2, len(ideal) + 2)))
        hits = np.cumsum(hit)
        prec_at_hit = np.cumsum(np.where(hit, hits / np.arange(1, len(ids) + 1), 0.0))
        first = int(np.argmax(hit)) if hit.any() else None
        for k in k_values:
            kk = min(k, len(ids))
            got = int(hits[kk - 1]) if kk else 0
            ideal_k = idcg[min(k, len(idcg)) - 1] if len(idcg) else 0.0
            values = {
                f"ndcg_at_{k}": (dcg[kk - 1] / ideal_k) if kk and ideal_k > 0 else 0.0,
                f"map_at_{k}": (prec_at_hit[kk - 1] / n_rel) if kk and n_rel else 0.0,
                f"recall_at_{k}": got / n_rel if n_rel else 0.0,
                f"precision_at_{k}": got / k,
                f"hit_rate_at_{k}": float(got > 0),
                f"mrr_at_{k}": 1.0 / (first + 1) if first is not None and first < k else 0.0,
            }
            for name, v in values.items():
                sums[name] = sums.get(name, 0.0) + float(v)
    return {name: total / len(ranked) for name, total in sums.items()}


def retrieval_scores(query_emb: np.ndarray, doc_emb: np.ndarray, doc_ids: list[str],
                     qrels: list[dict[str, int]], k_values=K_VALUES, chunk: int = 256) -> dict[str, float]:
    """Exact cosine top-k over the whole corpus for each query, then :func:`ranking_scores`."""
    q = _unit(query_emb)
    d = _unit(doc_emb)
    id_rank = _desc_rank(doc_ids)
    top = min(max(k_values), len(doc_ids))
    ranked = []
    for start in range(0, len(q), chunk):
        sims = q[start:start + chunk] @ d.T
        for row in sims:
            ranked.append([doc_ids[j] for j in rank_order(row, id_rank, top)])
    return ranking_scores(ranked, qrels, k_values)


def reranking_scores(query_emb: np.ndarray, candidates: list[tuple[np.ndarray, list[str]]],
                     qrels: list[dict[str, int]], k_values=K_VALUES) -> dict[str, float]:
    """Each query ranks only its own candidates (MTEB reranking = retrieval over ``top_ranked``)."""
    q = _unit(query_emb)
    ranked = []
    for qi, (emb, ids) in enumerate(candidates):
        sims = _unit(emb) @ q[qi]
        ranked.append([ids[j] for j in rank_order(sims, _desc_rank(ids), len(ids))])
    return ranking_scores(ranked, qrels, k_values)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def _desc_rank(ids: list[str]) -> np.ndarray:
    """Rank of each id in ascending string order (bigger = later), for trec_eval's id-descending tie-break."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    return rank


# --- Bitext mining --------------------------------------------------------------------------------------------

def bitext_scores(src_emb: np.ndarray, tgt_emb: np.ndarray, gold: list[int] | None = None,
                  chunk: int = 256) -> dict[str, float]:
    """Nearest target by cosine for each source; accuracy and weighted precision/recall/F1 (main: f1)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    s, t = _unit(src_emb), _unit(tgt_emb)
    pred = np.concatenate([np.argmax(s[i:i + chunk] @ t.T, axis=1) for i in range(0, len(s), chunk)])
    gold = np.arange(len(s)) if gold is None else np.asarray(gold)
    return {
        "precision": float(precision_score(gold, pred, zero_division=0, average="weighted")),
        "recall": float(recall_score(gold, pred, zero_division=0, average="weighted")),
        "f1": float(f1_score(gold, pred, zero_division=0, average="weighted")),
        "accuracy": float(accuracy_score(gold, pred)),
    }
