"""Cross-device negatives: two CPU processes on gloo, each with half the batch, give the gradients of the whole
batch on one process (positives and negatives stay aligned, negatives of uneven count included)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from m3e.training.losses import info_nce

B, D_IN, D = 4, 12, 8


def _data():
    g = torch.Generator().manual_seed(0)
    xa, xp = torch.randn(2 * B, D_IN, generator=g), torch.randn(2 * B, D_IN, generator=g)
    negs = [torch.randn(3, D_IN, generator=g), torch.randn(1, D_IN, generator=g)]  # rank 0 has 3, rank 1 has 1
    w = torch.randn(D, D_IN, generator=g)
    return xa, xp, negs, w


def _single(symmetric: bool) -> torch.Tensor:
    xa, xp, negs, w = _data()
    w = w.clone().requires_grad_()
    info_nce(xa @ w.T, xp @ w.T, torch.cat(negs) @ w.T, temperature=0.05, symmetric=symmetric).backward()
    return w.grad


def _worker(rank: int, port: int, symmetric: bool, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        xa, xp, negs, w = _data()
        w = w.clone().requires_grad_()
        part = slice(rank * B, (rank + 1) * B)
        loss = info_nce(xa[part] @ w.T, xp[part] @ w.T, negs[rank] @ w.T, temperature=0.05, symmetric=symmetric,
                        gather=True)
        loss.backward()
        grad = w.grad.clone()
        dist.all_reduce(grad)
        grad /= 2  # what DDP does: the mean of the processes' gradients
        out[rank] = grad
    finally:
        dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("symmetric", [False, True])
def test_two_processes_equal_one(symmetric):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_port(), symmetric, out), nprocs=2, join=True)
        grads = [out[0], out[1]]
    expected = _single(symmetric)
    for g in grads:
        torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-6)


def test_without_gather_each_process_sees_only_its_half():
    """The bug class uniem has: without gathering, the gradients differ from the whole batch's."""
    xa, xp, negs, w = _data()
    w1 = w.clone().requires_grad_()
    halves = sum(info_nce(xa[s] @ w1.T, xp[s] @ w1.T, n @ w1.T, temperature=0.05) / 2
                 for s, n in ((slice(0, B), negs[0]), (slice(B, 2 * B), negs[1])))
    halves.backward()
    assert not torch.allclose(w1.grad, _single(False), atol=1e-4)
