"""Task scores, defined exactly as MTEB defines them (same similarity functions, thresholds, ties).

Pure functions of embeddings and labels: no model, no I/O. Each is tested against a naive transcription
of MTEB's evaluator and the reference libraries it uses (scipy, scikit-learn).
"""

from __future__ import annotations

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
