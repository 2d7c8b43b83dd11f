"""Atomic checkpoints and exact resume.

A checkpoint is a folder ``step-000120`` written under a temporary name and renamed into place, then the
``latest`` pointer file is replaced atomically: a run killed at any moment leaves either the previous
checkpoint or the new one, never a half-written folder that looks complete. It holds the model weights
(safetensors), optimizer and scheduler state (tensors only, read back with ``weights_only=True``), the RNG
states and the position in the data plan, so a resumed run continues exactly where the old one stopped.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from m3e.errors import InputError
from m3e.utils.atomic import atomic_dir, atomic_path


def rng_state() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    return {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}


def set_rng_state(state: dict, torch_cpu: torch.Tensor, cuda: list[torch.Tensor] | None) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch_cpu)
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(root: Path, step: int, weights: dict[str, torch.Tensor], optimizer, scheduler,
                    trainer_state: dict, keep: int = 2) -> Path:
    target = root / f"step-{step:06d}"
    with atomic_dir(target) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                   tmp / "optimizer.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({**trainer_state, "rng": rng_state()}), encoding="utf-8")
    with atomic_path(root / "latest") as tmp:
        tmp.write_text(target.name, encoding="utf-8")
    old = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name != target.name)
    for p in old[:max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return target


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text(encoding="utf-8").strip()
    if not (path / "trainer_state.json").is_file():
        raise InputError(f"checkpoint pointer {pointer} names {path}, which is incomplete; delete the pointer to "
                         "start over")
    return path


def load_checkpoint(path: Path):
    weights = load_file(str(path / "weights.safetensors"))
    extra = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    return weights, extra, state
