"""Losses: in-batch softmax InfoNCE (with hard negatives, optional symmetric term, cross-device negatives) and
CoSENT for scored pairs; optional Matryoshka dimensions.

Why our own instead of sentence-transformers' MultipleNegativesRankingLoss: M3E/BGE data has a varying number
of hard negatives per record, which ST's fixed-column losses cannot take, and the cached (GradCache) step in
:mod:`m3e.training.step` needs the loss as a plain function of embeddings. Each function is tested against a
naive loop and against ST's own losses where their inputs coincide.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None, *,
             temperature: float = 0.05, symmetric: bool = False, gather: bool = False,
             neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of each anchor against every positive and negative in the batch (cosine / T).

    ``negatives``: (M, d) hard negatives of any record in the batch (they are negatives for every anchor).
    ``gather``: under torch.distributed, candidates (and anchors, for the symmetric term) from every process
    join the softmax, with gradients flowing back to the process that made them.
    """
    a = F.normalize(anchors, dim=-1)
    p = F.normalize(positives, dim=-1)
    n = F.normalize(negatives, dim=-1) if negatives is not None and len(negatives) else a.new_zeros((0, a.shape[1]))
    mask = neg_mask if neg_mask is not None else torch.ones(len(n), dtype=torch.bool, device=a.device)
    offset = 0
    all_a = a
    if gather:
        p, offset = _gather(p)
        n, mask = _gather_padded(n, mask)
        if symmetric:
            all_a, _ = _gather(a)
    candidates = torch.cat([p, n])
    logits = a @ candidates.T / temperature
    if len(n):
        keep = torch.cat([torch.ones(len(p), dtype=torch.bool, device=a.device), mask])
        logits = logits.masked_fill(~keep[None, :], float("-inf"))
    target = torch.arange(len(a), device=a.device) + offset
    loss = F.cross_entropy(logits, target)
    if symmetric:  # each positive must also pick its own anchor among all anchors
        local_p = p[offset:offset + len(a)]
        back = local_p @ all_a.T / temperature
        loss = (loss + F.cross_entropy(back, target)) / 2
    return loss


def cosent(a: torch.Tensor, b: torch.Tensor, scores: torch.Tensor, *, scale: float = 20.0) -> torch.Tensor:
    """CoSENT: log(1 + sum over pairs (i, j) with score_i > score_j of exp(scale * (cos_j - cos_i)))."""
    cos = (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1) * scale
    diff = cos[None, :] - cos[:, None]  # [i, j] = cos_j - cos_i
    wrong = scores[:, None] > scores[None, :]
    diff = diff.masked_fill(~wrong, float("-inf"))
    return torch.logsumexp(torch.cat([diff.new_zeros(1), diff.flatten()]), dim=0)


def drift(student: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance of each embedding from the starting model's embedding of the same text."""
    return (1 - F.cosine_similarity(student.float(), reference.float(), dim=-1)).mean()


def geometry(student: torch.Tensor, reference: torch.Tensor, taught: torch.Tensor) -> torch.Tensor:
    """1 - Pearson correlation between the student's and the starting model's cosines of the batch's text pairs
    that the contrastive loss does not act on (``taught``: (N, N) bool, True where the loss moves the cosine).

    Why: CoSENT only asks to re-rank each record's own pair, yet the whole space moves. Measured on the first
    m3e-small-zh, 97 % of the change of the untaught cosines was one global shift (e5's cosines spread out from
    0.81 on average to 0.64), which no ranking sees; correlation ignores any shift and scale and keeps the
    relative structure that retrieval and long-text tasks rely on, without pulling the taught pairs back the way
    the absolute ``drift`` does.
    """
    s = F.normalize(student.float(), dim=-1)
    r = F.normalize(reference.float(), dim=-1)
    taught = taught.to(s.device)
    keep = ~taught & torch.ones_like(taught).triu(1)
    if keep.sum() < 2:
        return s.new_zeros(())
    x, y = (s @ s.T)[keep], (r @ r.T)[keep]
    x, y = x - x.mean(), y - y.mean()
    return 1 - (x * y).sum() / (x.norm() * y.norm()).clamp_min(1e-12)


def matryoshka(loss_fn, dims: list[int] | None, *embeddings: torch.Tensor, **kwargs) -> torch.Tensor:
    """Sum of ``loss_fn`` on the first d dimensions of every embedding for each d (full size when dims is None)."""
    if not dims:
        return loss_fn(*embeddings, **kwargs)
    total = 0.0
    for d in dims:
        total = total + loss_fn(*(e[..., :d] if e is not None else None for e in embeddings), **kwargs)
    return total


def _gather(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All processes' rows (equal counts), differentiable; and where this process's rows start."""
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t, 0
    return torch.cat(all_gather(t.contiguous())), dist.get_rank() * len(t)


def _gather_padded(t: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different counts per process: pad to the largest, gather, and return which rows are real."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t, mask
    sizes = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([len(t)], device=t.device))
    most = int(max(s.item() for s in sizes))
    if most == 0:
        return t, mask
    pad = most - len(t)
    t = torch.cat([t, t.new_zeros((pad, t.shape[1]))])
    mask = torch.cat([mask, torch.zeros(pad, dtype=torch.bool, device=mask.device)])
    gathered, _ = _gather(t)
    masks = [torch.zeros_like(mask) for _ in sizes]
    dist.all_gather(masks, mask)
    return gathered, torch.cat(masks)
