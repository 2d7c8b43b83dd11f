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
