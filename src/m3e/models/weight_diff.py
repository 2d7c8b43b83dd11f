"""A trained model shipped as a compact difference from the built-in it was trained from.

Every 2-D weight that changed is stored as the truncated SVD of (trained - base): two thin fp16 factors of rank
``rank``; every other changed tensor (biases, LayerNorms, a new head) whole in fp32; unchanged tensors not at all.
Rebuilding adds the products back to the base's weights. What is measured at packing time is the rebuilt model,
so the numbers a card states are those of what ships.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DIFF_FILE = "diff.safetensors"


def pack_diff(base: dict[str, torch.Tensor], trained: dict[str, torch.Tensor], rank: int,
              full: set[str] = frozenset()) -> tuple[dict, dict]:
    """(tensors to save, report): per matrix its relative Frobenius error of the rank-``rank`` difference.
    ``full``: tensors stored whole whatever their shape (those the base does not have: a new head)."""
    out: dict[str, torch.Tensor] = {}
    errors: dict[str, float] = {}
    for name, t in trained.items():
        t = t.detach().float().cpu()
        b = base.get(name)
        if name not in full and b is not None and b.shape == t.shape and torch.equal(b.float().cpu(), t):
            continue  # unchanged (frozen embeddings, say)
        if name in full or b is None or b.shape != t.shape or t.dim() != 2 or min(t.shape) <= 2 * rank:
            out[f"{name}::full"] = t.contiguous()
            continue
        delta = t - b.float().cpu()
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        left = (u[:, :rank] * s[:rank]).to(torch.float16).contiguous()
        right = vh[:rank].to(torch.float16).contiguous()
        out[f"{name}::left"], out[f"{name}::right"] = left, right
        approx = left.float() @ right.float()
        errors[name] = float(torch.linalg.norm(delta - approx) / max(float(torch.linalg.norm(delta)), 1e-12))
    return out, errors


def apply_diff(base: dict[str, torch.Tensor], packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trained weights rebuilt from the base and a packed difference."""
    state = {k: v.clone() for k, v in base.items()}
    names = {k.rsplit("::", 1)[0] for k in packed}
    for name in names:
        if f"{name}::full" in packed:
            state[name] = packed[f"{name}::full"].float()
            continue
        if name not in state:
            raise KeyError(f"the packed difference changes {name}, which the base model does not have")
        delta = packed[f"{name}::left"].float() @ packed[f"{name}::right"].float()
        state[name] = (state[name].float() + delta).to(state[name].dtype)
    return state


def write_diff(folder: Path, packed: dict[str, torch.Tensor], info: dict) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(packed, str(folder / DIFF_FILE))
    (folder / "diff_config.json").write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    return folder


def read_diff(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors.torch import load_file

    return load_file(str(folder / DIFF_FILE)), json.loads((folder / "diff_config.json").read_text(encoding="utf-8"))
