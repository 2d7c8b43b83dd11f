"""Models shipped as a small trained difference: a base folder plus a LoRA adapter, merged into a plain
sentence-transformers folder on first use (atomically) and cached like any converted built-in."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from m3e.errors import SourceMismatchError


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def merge_adapter(base_dir: Path, adapter_dir: Path, target: Path, *, name: str, version: int,
                  card: str | None = None) -> Path:
    from peft import PeftModel
    from sentence_transformers import SentenceTransformer

    from m3e.models.encoder import Embedder
    from m3e.models.export import set_backbone

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file() or not (adapter_dir / "adapter_config.json").is_file():
        raise SourceMismatchError(f"adapter files missing in {adapter_dir}; reinstall m3e")
    st = SentenceTransformer(str(base_dir), device="cpu")
    with warnings.catch_warnings():  # peft calls a transformers API renamed in v5: noise on every first run
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        merged = PeftModel.from_pretrained(st[0].auto_model, str(adapter_dir)).merge_and_unload()
    set_backbone(st, merged)
    Embedder(st, name=name).save(target)
    (target / "m3e_provenance.json").write_text(json.dumps({
        "name": name, "converter_version": version, "base": base_dir.name,
        "adapter_sha256": file_sha256(weights)}, indent=2), encoding="utf-8")
    if card:
        (target / "README.md").write_text(card, encoding="utf-8")
    return target


def adapter_from_difference(base_dir: Path, tuned_dir: Path, target: Path, rank: int) -> dict[str, float]:
    """Write a peft LoRA adapter (rank ``rank``, scale 1) that turns ``base_dir`` into ``tuned_dir``: each changed
    Linear weight's difference as its truncated SVD. A model made of LoRA runs and mixes of them (m3e mix) has
    differences of rank at most the sum of theirs, so that rank rebuilds it exactly. Refused when anything else
    changed (a LayerNorm, the embeddings): a LoRA adapter could not carry it. Returns each module's relative
    error (0 when exact)."""
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(str(base_dir), device="cpu")[0].auto_model
    tuned = SentenceTransformer(str(tuned_dir), device="cpu")[0].auto_model
    b_state, t_state = base.state_dict(), tuned.state_dict()
    linear = {name for name, m in base.named_modules() if isinstance(m, torch.nn.Linear)}
    tensors: dict[str, torch.Tensor] = {}
    errors: dict[str, float] = {}
    targets: set[str] = set()
    for key, t in t_state.items():
        b = b_state.get(key)
        if b is None or b.shape != t.shape:
            raise SourceMismatchError(f"{tuned_dir} is not {base_dir}'s architecture (tensor {key})")
        if torch.equal(b, t):
            continue
        module, _, kind = key.rpartition(".")
        if module not in linear or kind != "weight":
            raise SourceMismatchError(f"{key} changed, which a LoRA adapter cannot carry (only Linear weights)")
        delta = (t.float() - b.float())
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        root = s[:rank].sqrt()
        lora_b = (u[:, :rank] * root).contiguous()
        lora_a = (root[:, None] * vh[:rank]).contiguous()
        errors[module] = float(torch.linalg.norm(delta - lora_b @ lora_a) / torch.linalg.norm(delta))
        tensors[f"base_model.model.{module}.lora_A.weight"] = lora_a
        tensors[f"base_model.model.{module}.lora_B.weight"] = lora_b
        targets.add(module)
    if not tensors:
        raise SourceMismatchError(f"{tuned_dir} has the same weights as {base_dir}: nothing to pack")
    config = {"peft_type": "LORA", "task_type": None, "r": rank, "lora_alpha": rank, "lora_dropout": 0.0,
              "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
              "target_modules": sorted(targets), "base_model_name_or_path": base_dir.name, "use_rslora": False,
              "use_dora": False, "modules_to_save": None}
    from m3e.utils.atomic import atomic_dir

    with atomic_dir(target, replace=True) as tmp:  # files get the umask's permissions, as a plain open() gives
        save_file(tensors, str(tmp / "adapter_model.safetensors"))
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return errors
