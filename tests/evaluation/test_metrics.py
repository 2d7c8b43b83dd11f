"""Our vectorized scores against a naive loop transcription of MTEB's evaluators + scipy/scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import average_precision_score
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

from m3e.evaluation.types.pair_classification import pair_classification_scores
from m3e.evaluation.types.sts import sts_scores


def naive_best_acc(scores, labels, high):
    rows = sorted(zip(scores, labels, strict=True), key=lambda x: x[0], reverse=high)
    max_acc, best = 0, -1
    pos, neg = 0, sum(np.array(labels) == 0)
    for i in range(len(rows) - 1):
        if rows[i][1] == 1:
            pos += 1
        else:
            neg -= 1
        acc = (pos + neg) / len(labels)
        if acc > max_acc:
            max_acc, best = acc, (rows[i][0] + rows[i + 1][0]) / 2
    return max_acc, best


def naive_best_f1(scores, labels, high):
    rows = sorted(zip(scores, labels, strict=True), key=lambda x: x[0], reverse=high)
    best = (0, 0, 0, 0)
    extracted = correct = 0
    total = sum(labels)
    for i in range(len(rows) - 1):
        extracted += 1  # noqa: SIM113 - transcribed as MTEB writes it
        if rows[i][1] == 1:
            correct += 1
        if correct > 0:
            p, r = correct / extracted, correct / total
            f1 = 2 * p * r / (p + r)
            if f1 > best[0]:
                best = (f1, p, r, (rows[i][0] + rows[i + 1][0]) / 2)
    return best


def naive_sims(a, b):
    """The similarity scores as MTEB computes them (scikit-learn's paired distances)."""
    return {
        "cosine": (list(1 - paired_cosine_distances(a, b)), True),
        "manhattan": (list(paired_manhattan_distances(a, b)), False),
        "euclidean": (list(paired_euclidean_distances(a, b)), False),
        "dot": ([float(x @ y) for x, y in zip(a, b, strict=True)], True),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_pair_classification_equals_mteb_definition(seed, ties):
    rng = np.random.default_rng(seed)
    n, d = 300, 16
    a = rng.normal(size=(n, d))
    b = a * rng.uniform(0, 1, size=(n, 1)) + rng.normal(size=(n, d))
    if ties:  # quantized vectors give tied scores, where sort stability matters
        a, b = np.round(a), np.round(b)
    labels = (rng.uniform(size=n) < 0.3).astype(int)
    got = pair_classification_scores(a, b, labels)
    for name, (scores, high) in naive_sims(a, b).items():
        acc, acc_t = naive_best_acc(scores, labels, high)
        f1, p, r, f1_t = naive_best_f1(scores, labels, high)
        ap = average_precision_score(labels, np.array(scores) * (1 if high else -1))
        assert got[f"{name}_accuracy"] == pytest.approx(acc, abs=1e-9)
        assert got[f"{name}_accuracy_threshold"] == pytest.approx(acc_t, abs=1e-6)
        assert got[f"{name}_f1"] == pytest.approx(f1, abs=1e-9)
        assert got[f"{name}_precision"] == pytest.approx(p, abs=1e-9)
        assert got[f"{name}_recall"] == pytest.approx(r, abs=1e-9)
        assert got[f"{name}_f1_threshold"] == pytest.approx(f1_t, abs=1e-6)
        assert got[f"{name}_ap"] == pytest.approx(ap, abs=1e-9)
    assert got["max_ap"] == max(got[f"{n}_ap"] for n in ("cosine", "manhattan", "euclidean", "dot"))


def test_sts_equals_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    gold = rng.integers(0, 6, size=200)
    got = sts_scores(a, b, gold)
    for name, (scores, high) in naive_sims(a, b).items():
        s = np.array(scores) * (1 if high else -1)
        assert got[f"{name}_spearman"] == pytest.approx(spearmanr(gold, s).statistic, abs=1e-9)
        assert got[f"{name}_pearson"] == pytest.approx(pearsonr(gold, s).statistic, abs=1e-9)
