"""Writing a trained model: a plain sentence-transformers folder that loads in ``SentenceTransformer(path)``,
LoRA merged in (at a chosen scale), the adapter kept beside it; written atomically over an older export."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from m3e.utils.atomic import atomic_dir


def set_backbone(st, model: torch.nn.Module) -> None:
    """Swap the transformer inside a SentenceTransformer (``model`` in sentence-transformers 6, where
    ``auto_model`` is a read-only alias)."""
    module = st[0]
    if isinstance(getattr(type(module), "auto_model", None), property) and hasattr(module, "model"):
        module.model = model
    else:
        module.auto_model = model


def scale_lora(peft_model, scale: float):
    """Multiply every LoRA layer's scaling (alpha / r) by ``scale`` in place, so a merge adds ``scale`` x the
    learned difference: the same as loading the adapter with ``lora_alpha`` x ``scale``."""
    if scale != 1.0:
        from peft.tuners.lora import LoraLayer

        for module in peft_model.modules():
            if isinstance(module, LoraLayer):
                for name in module.scaling:
                    module.scaling[name] *= scale
    return peft_model


def export_model(st, target: Path, *, base_name: str, max_length: int | None = None,
                 merge_scale: float = 1.0) -> Path:
    """Save ``st`` (a SentenceTransformer, LoRA-wrapped or not) as a plain folder at ``target``.

    LoRA: a copy is merged at ``merge_scale`` (the training model stays untouched) and the adapter is saved in
    ``target/adapter`` with the base's name and the scale folded into its ``lora_alpha``. ``max_length`` is the
    length the exported model reads (training may have used a shorter one). A kill at any moment leaves the old
    export or the new one, never a mix.
    """
    auto = st[0].auto_model
    with atomic_dir(target, replace=True) as tmp:
        if hasattr(auto, "merge_and_unload"):
            merged = copy.deepcopy(st)
            set_backbone(merged, scale_lora(merged[0].auto_model, merge_scale).merge_and_unload())
            if max_length:
                merged.max_seq_length = max_length
            merged.save(str(tmp))
            auto.save_pretrained(str(tmp / "adapter"))
            config = tmp / "adapter" / "adapter_config.json"  # the base's name, not this machine's cache path
            settings = json.loads(config.read_text(encoding="utf-8"))
            settings["base_model_name_or_path"] = base_name
            if merge_scale != 1.0:  # peft scales the difference by alpha / r
                settings["lora_alpha"] = settings["lora_alpha"] * merge_scale
            config.write_text(json.dumps(settings, indent=2, sort_keys=True), encoding="utf-8")
        else:
            training_length = st.max_seq_length
            if max_length:
                st.max_seq_length = max_length
            try:
                st.save(str(tmp))
            finally:
                st.max_seq_length = training_length
    return target
