"""Pair classification: are two texts a positive pair? Best-threshold accuracy/F1 and AP per similarity (MTEB)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

from m3e.evaluation.types.base import Encode, TaskRefused, TaskType
from m3e.evaluation.types.sts import PairData, encode_pairs, pairs_from_records, similarities


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
    for name, (scores, higher) in similarities(a, b).items():
        acc, acc_t = best_accuracy_threshold(scores, labels, higher)
        f1, p, r, f1_t = best_f1_threshold(scores, labels, higher)
        ap = average_precision_score(labels, scores if higher else -scores)
        out.update({f"{name}_accuracy": acc, f"{name}_accuracy_threshold": acc_t, f"{name}_f1": f1,
                    f"{name}_precision": p, f"{name}_recall": r, f"{name}_f1_threshold": f1_t,
                    f"{name}_ap": float(ap)})
    for metric in ("accuracy", "f1", "precision", "recall", "ap"):
        out[f"max_{metric}"] = max(out[f"{n}_{metric}"] for n in ("cosine", "manhattan", "euclidean", "dot"))
    return out


def score(data: PairData, encode: Encode, params: dict) -> dict[str, float]:
    if len(set(data.labels)) < 2:
        raise TaskRefused(f"needs both labels 0 and 1, found only {sorted(set(data.labels))}")
    return pair_classification_scores(*encode_pairs(data, encode), data.labels)


TYPE = TaskType(
    name="PairClassification", main_score="max_ap", prompts={"sentence1": "query", "sentence2": "query"},
    category="s2s", score=score, fields="sentence1, sentence2, label (0/1)",
    detect=lambda keys, records: {"sentence1", "sentence2", "label"} <= keys,
    from_records=lambda path, records: pairs_from_records(path, records, "label", binary=True),
)
