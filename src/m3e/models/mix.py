"""Weight-space mixing: base + sum of scale_i x (model_i - base), the cheap tool to try before retraining.

One rule covers the three uses: task arithmetic (two fine-tunes' differences with their own scales), a WiSE-FT
step back toward the base (one model, scale < 1) and checkpoint averaging (n checkpoints of one run, 1/n each).
Every model must be the base's architecture (same tensor names and shapes); a tensor a model changes that the
base lacks is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from m3e.errors import InputError


def mix_states(base: dict[str, torch.Tensor], parts: Sequence[tuple[dict[str, torch.Tensor], float]],
               names: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """``base + sum(scale * (state - base))`` per tensor, computed in float32, stored in the base's dtype."""
    out: dict[str, torch.Tensor] = {}
    labels = list(names) or [f"model {i + 1}" for i in range(len(parts))]
    for (state, _), label in zip(parts, labels, strict=True):
        extra = sorted(set(state) - set(base))
        missing = sorted(set(base) - set(state))
        if extra or missing:
            raise InputError(f"{label} is not the base's architecture: "
                             + (f"tensors the base lacks: {', '.join(extra[:3])}" if extra else "")
                             + ("; " if extra and missing else "")
                             + (f"missing tensors: {', '.join(missing[:3])}" if missing else ""))
        for key, t in state.items():
            if t.shape != base[key].shape:
                raise InputError(f"{label}: tensor {key} has shape {tuple(t.shape)}, the base's is "
                                 f"{tuple(base[key].shape)}")
    for key, b in base.items():
        if not b.is_floating_point():  # position ids and other integer buffers are never mixed
            out[key] = b.clone()
            continue
        acc = b.float().clone()
        for state, scale in parts:
            if scale:
                acc += scale * (state[key].float() - b.float())
        out[key] = acc.to(b.dtype)
    return out


def parse_part(spec: str) -> tuple[str, float]:
    """``MODEL[:SCALE]`` (scale 1 when left out); a Windows drive letter or a hub id never holds the scale."""
    name, sep, scale = spec.rpartition(":")
    if sep and name:
        try:
            return name, float(scale)
        except ValueError:
            pass
    return spec, 1.0


def mix_models(base: str, parts: Sequence[tuple[str, float]], target: Path, log=None) -> Path:
    """Load the base and each model through the one resolver, mix their backbones' weights, save a
    sentence-transformers folder (the base's tokenizer, pooling and prompts) at ``target``."""
    from m3e.models.resolver import load_model

    if not parts:
        raise InputError("nothing to mix: give at least one --part MODEL[:SCALE]")
    if target.exists() and any(target.iterdir()):
        raise InputError(f"{target} exists and is not empty; choose a new folder")
    base_model = load_model(base, device="cpu", log=log)
    backbone = _backbone(base_model, base)
    base_state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    states = []
    for name, scale in parts:
        other = load_model(name, device="cpu", log=log)
        states.append(({k: v.detach().cpu() for k, v in _backbone(other, name).state_dict().items()}, scale))
        del other
    mixed = mix_states(base_state, states, [n for n, _ in parts])
    backbone.load_state_dict(mixed)
    base_model.name = target.name
    return base_model.save(target)


def _backbone(embedder, name: str) -> torch.nn.Module:
    first = embedder.model[0] if hasattr(embedder, "model") and hasattr(embedder.model, "__getitem__") else None
    if first is None or not hasattr(first, "auto_model"):
        raise InputError(f"{name} is not a transformer model (a static model, say); mixing works on transformer "
                         "weights of one architecture")
    return first.auto_model
