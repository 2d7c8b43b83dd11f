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


DIST_SCRIPT = """
import os, sys
import torch
from safetensors.torch import save_file
from m3e import load_model
from m3e.data.prepared import prepare_source
from m3e.training import FineTuner, TrainConfig

model_dir, data, cache, out = sys.argv[1:5]
adamw_step = torch.optim.AdamW.step

def step(self, *args, **kwargs):  # the first step's gradients (DDP: already averaged over ranks), from rank 0
    if not getattr(step, "done", False) and os.environ.get("RANK", "0") == "0":
        params = [p for group in self.param_groups for p in group["params"]]
        save_file({f"p{i}": p.grad.detach().clone() for i, p in enumerate(params) if p.grad is not None},
                  out + "-grads.safetensors")
        step.done = True
    return adamw_step(self, *args, **kwargs)

torch.optim.AdamW.step = step
source = prepare_source(data, cache)  # every rank maps the same cache (built once, under a lock)
FineTuner(load_model(model_dir, device="cpu", threads=1), [source]).run(TrainConfig(
    output=out, batch_size=8, max_steps=3, lr=1e-3, dropout=0.0, progress=False, seed=7))
"""


def test_two_process_training_on_the_arrow_path_equals_one_process(tiny_st_dir, tmp_path):
    """torchrun, 2 CPU processes on loopback (gloo), each taking half of every global batch: the same losses and
    the same trained weights as one process with the whole batch (cross-device negatives)."""
    import json
    import subprocess
    import sys

    from safetensors.torch import load_file

    from tests.conftest import SAMPLE

    data = tmp_path / "pairs.jsonl"
    rows = [{"query": f"{SAMPLE[i % 10]} {i}", "positive": f"{SAMPLE[(i * 3) % 12]} 第{i}"} for i in range(48)]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    script = tmp_path / "train.py"
    script.write_text(DIST_SCRIPT, encoding="utf-8")
    args = [str(tiny_st_dir), str(data), str(tmp_path / "cache")]
    one = subprocess.run([sys.executable, str(script), *args, str(tmp_path / "one")], capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={_port()}", str(script), *args, str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert len(list((tmp_path / "cache").glob("pairs-*"))) == 1  # one cache entry for both runs and both ranks
    h1 = json.loads((tmp_path / "one" / "training_state.json").read_text())
    h2 = json.loads((tmp_path / "two" / "training_state.json").read_text())
    assert h1["fingerprint"] == h2["fingerprint"] and h1["steps"] == h2["steps"] == 3
    (s1, l1), (s2, l2) = h1["history"][0], h2["history"][0]  # the first global batch: the same loss
    assert s1 == s2 == 1 and abs(l1 - l2) < 1e-5, (l1, l2)
    for (s1, l1), (s2, l2) in zip(h1["history"], h2["history"], strict=True):  # later steps: the same batches
        assert s1 == s2 and abs(l1 - l2) < 1e-2, (s1, l1, l2)  # (Adam turns float noise into small differences)
    g1 = load_file(str(tmp_path / "one-grads.safetensors"))
    g2 = load_file(str(tmp_path / "two-grads.safetensors"))
    assert g1.keys() == g2.keys() and max(float(g.abs().max()) for g in g1.values()) > 1e-3
    for k in g1:  # the same gradients: each rank's half-batch loss with negatives gathered from the other rank
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-4, atol=2e-6)
