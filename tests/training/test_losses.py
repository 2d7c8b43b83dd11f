"""Losses against naive loops and against sentence-transformers' own losses; cached step equals plain."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from m3e.training.losses import cosent, info_nce, matryoshka


def naive_info_nce(a, p, n, t, symmetric=False):
    a, p = F.normalize(a, dim=-1), F.normalize(p, dim=-1)
    n = F.normalize(n, dim=-1) if n is not None else a[:0]
    cands = torch.cat([p, n])
    total = 0.0
    for i in range(len(a)):
        logits = [float(a[i] @ c) / t for c in cands]
        total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    loss = total / len(a)
    if symmetric:
        back = 0.0
        for i in range(len(a)):
            logits = [float(p[i] @ x) / t for x in a]
            back += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
        loss = (loss + back / len(a)) / 2
    return loss


def naive_cosent(a, b, s, scale):
    cos = [float(F.cosine_similarity(a[i], b[i], dim=0)) * scale for i in range(len(a))]
    terms = [math.exp(cos[j] - cos[i]) for i in range(len(a)) for j in range(len(a)) if s[i] > s[j]]
    return math.log(1 + sum(terms))


@pytest.mark.parametrize("n_neg", [0, 3, 7])
@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_equals_naive(n_neg, symmetric):
    g = torch.Generator().manual_seed(n_neg)
    a, p = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    n = torch.randn(n_neg, 8, generator=g) if n_neg else None
    got = info_nce(a, p, n, temperature=0.05, symmetric=symmetric)
    assert float(got) == pytest.approx(naive_info_nce(a, p, n, 0.05, symmetric), rel=1e-5)


def test_info_nce_gradients_equal_autograd_of_naive_formula():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, 8, generator=g, requires_grad=True)
    p = torch.randn(5, 8, generator=g, requires_grad=True)
    n = torch.randn(4, 8, generator=g, requires_grad=True)
    info_nce(a, p, n, temperature=0.1).backward()
    ours = [x.grad.clone() for x in (a, p, n)]
    for x in (a, p, n):
        x.grad = None
    an, pn, nn = (F.normalize(x, dim=-1) for x in (a, p, n))
    loss = 0
    for i in range(5):  # a loop over anchors, built from scalar ops
        logits = torch.stack([an[i] @ c for c in torch.cat([pn, nn])]) / 0.1
        loss = loss - (logits[i] - torch.logsumexp(logits, 0))
    (loss / 5).backward()
    for mine, ref in zip(ours, (a.grad, p.grad, n.grad), strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-6)


def test_info_nce_equals_sentence_transformers_mnrl(tiny_model):
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
        MultipleNegativesSymmetricRankingLoss,
    )

    g = torch.Generator().manual_seed(2)
    a, p, n1, n2 = (torch.randn(8, 16, generator=g) for _ in range(4))
    st = MultipleNegativesRankingLoss(tiny_model.model, scale=20.0)
    ref = st.compute_loss_from_embeddings([a, p, n1, n2], None)
    ours = info_nce(a, p, torch.cat([n1, n2]), temperature=1 / 20)
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)
    sym = MultipleNegativesSymmetricRankingLoss(tiny_model.model, scale=20.0)
    assert float(info_nce(a, p, temperature=0.05, symmetric=True)) == pytest.approx(
        float(sym.compute_loss_from_embeddings([a, p], None)), rel=1e-5)


def test_cosent_equals_naive_and_sentence_transformers(tiny_model):
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(10, 16, generator=g), torch.randn(10, 16, generator=g)
    s = torch.tensor([0, 1, 2, 3, 4, 5, 5, 1, 0, 3], dtype=torch.float)
    ours = float(cosent(a, b, s, scale=20.0))
    assert ours == pytest.approx(naive_cosent(a, b, s, 20.0), rel=1e-5)
    ref = CoSENTLoss(tiny_model.model, scale=20.0).compute_loss_from_embeddings([a, b], s)
    assert ours == pytest.approx(float(ref), rel=1e-5)


def test_matryoshka_sums_truncated_losses():
    g = torch.Generator().manual_seed(4)
    a, p = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
    total = matryoshka(info_nce, [16, 8, 4], a, p, None, temperature=0.05)
    parts = sum(info_nce(a[:, :d], p[:, :d], None, temperature=0.05) for d in (16, 8, 4))
    assert float(total) == pytest.approx(float(parts))


def test_drift_equals_naive():
    from m3e.training.losses import drift

    torch.manual_seed(0)
    s, r = torch.randn(6, 5), torch.randn(6, 5)
    naive = sum(1 - float(s[i] @ r[i]) / float(s[i].norm() * r[i].norm()) for i in range(6)) / 6
    assert float(drift(s, r)) == pytest.approx(naive, rel=1e-6)
    assert float(drift(s, s * 3)) == pytest.approx(0.0, abs=1e-6)


def _cos(x, y):
    return float(x @ y) / float(x.norm() * y.norm())


@pytest.mark.parametrize("kind", ["scored", "pair", "triplet"])
def test_geometry_equals_naive_over_the_untaught_pairs(kind):
    """Vectorized term against a loop over every pair of texts, deciding per pair whether the loss acts on it."""
    from m3e.training.losses import geometry
    from m3e.training.step import BatchTexts, taught_pairs

    n = 4
    negatives = [f"n{i}" for i in range(3)] if kind == "triplet" else []
    batch = BatchTexts(kind, [f"a{i}" for i in range(n)], [f"p{i}" for i in range(n)], negatives,
                       [float(i) for i in range(n)] if kind == "scored" else [])
    texts = batch.anchors + batch.positives + batch.negatives
    torch.manual_seed(1)
    s, r = torch.randn(len(texts), 6), torch.randn(len(texts), 6)

    def taught(x, y):
        if {x[0], y[0]} == {"a"} or "a" not in (x[0], y[0]):
            return False  # anchor-anchor, candidate-candidate: no loss term
        if kind == "scored":
            return x[1:] == y[1:]  # only a record's own pair
        return True  # InfoNCE: every anchor against every candidate

    kept = [(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts)) if not taught(texts[i], texts[j])]
    x = np.array([_cos(s[i], s[j]) for i, j in kept])
    y = np.array([_cos(r[i], r[j]) for i, j in kept])
    naive = 1 - np.corrcoef(x, y)[0, 1]
    assert float(geometry(s, r, taught_pairs(batch))) == pytest.approx(naive, rel=1e-5)
    assert float(geometry(s, 2 * s, taught_pairs(batch))) == pytest.approx(0.0, abs=1e-6)
    assert taught_pairs(batch).equal(taught_pairs(batch).T)
    everything = torch.ones(len(texts), len(texts), dtype=torch.bool)
    assert float(geometry(s, r, everything)) == 0.0  # nothing left to keep
