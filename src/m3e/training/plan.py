"""The run's data plan: every epoch's batches (array plans, :mod:`m3e.data.batching`), the number of optimizer
steps, and a fingerprint of everything that shapes them, which a resumed run must match exactly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from m3e.data.batching import EpochPlan, epoch_plan
from m3e.errors import InputError

PLAN_OPTIONS = ("batch_size", "seed", "shuffle", "epochs")
# recorded since 2026-12-08; a checkpoint written before lacks it, and is checked on the rest
LATER_KEYS = {"start": "the starting model's weights (the recipe's base or --base)"}


def source_fingerprint(source) -> str:
    """What the selected records hold (text hashes, and scores for scored pairs) in their order: a data folder
    that was copied, re-mounted or touched still resumes; an edited file or another selection does not."""
    h = hashlib.sha256(memoryview(np.ascontiguousarray(source.hashes(), dtype=np.uint64)))  # no copy of a map
    if source.kind == "scored":
        h.update(memoryview(np.ascontiguousarray(source.scores(), dtype=np.float64)))
    return h.hexdigest()[:16]


def weights_digest(module) -> str:
    """The starting weights, exactly (every tensor's bytes, in name order): a checkpoint holds only what training
    changed (a LoRA adapter), so resuming it on another base would silently build a different model."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def data_fingerprint(sources, config) -> dict:
    return {
        "sources": [{"name": s.name, "data": source_fingerprint(s), "records": len(s), "weight": s.weight,
                     "kind": s.kind} for s in sources],
        **{k: getattr(config, k) for k in PLAN_OPTIONS},
    }


def changes(saved: dict, now: dict) -> list[str]:
    """What differs between two fingerprints, in words."""
    out = [f"{k}: {saved.get(k)!r} then, {now.get(k)!r} now" for k in PLAN_OPTIONS if saved.get(k) != now.get(k)]
    out += [f"{what} changed ({saved[k]} then, {now.get(k)} now)" for k, what in LATER_KEYS.items()
            if k in saved and saved[k] != now.get(k)]
    before = {s["name"]: s for s in saved.get("sources", [])}
    after = {s["name"]: s for s in now["sources"]}
    for name in before.keys() - after.keys():
        out.append(f"source {name} is gone")
    for name in after.keys() - before.keys():
        out.append(f"source {name} is new")
    for name in before.keys() & after.keys():
        a, b = before[name], after[name]
        for key, what in (("data", "its data (file or selection)"), ("records", "its record count"),
                          ("weight", "its weight"), ("kind", "its record kind")):
            if a.get(key) != b.get(key):
                out.append(f"source {name}: {what} changed ({a.get(key)} then, {b.get(key)} now)")
    if [s["name"] for s in saved.get("sources", [])] != [s["name"] for s in now["sources"]] and not out:
        out.append("the order of the sources changed")
    return out


def check_resume(saved: dict | None, now: dict, where: str) -> None:
    if saved is None:
        raise InputError(f"{where} was written before runs recorded their data fingerprint; it cannot be checked, "
                         "so it is not resumed: start a new run (another --output)")
    diff = changes(saved, now)
    if diff:
        raise InputError(f"cannot resume from {where}: " + "; ".join(diff) + ". Resume with the same data and "
                         "options, or start a new run (another --output)")


@dataclass
class TrainingPlan:
    epochs: list[EpochPlan]
    total: int  # optimizer steps of the whole run
    fingerprint: dict

    @classmethod
    def build(cls, sources, config, start: str | None = None) -> TrainingPlan:
        """``start``: :func:`weights_digest` of the model before training."""
        seed = config.seed if config.shuffle else 0
        epochs = [epoch_plan(sources, config.batch_size, seed, e) for e in range(config.epochs)]
        total = sum(len(p) for p in epochs)
        if config.max_steps:
            total = min(total, config.max_steps)
        if total == 0:
            raise InputError(f"no full batch of {config.batch_size} in any source; lower --batch-size")
        fingerprint = data_fingerprint(sources, config)
        if start is not None:
            fingerprint["start"] = start
        return cls(epochs, total, fingerprint)
