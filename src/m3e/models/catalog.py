"""What models are available here without loading any weights (for `m3e models`)."""

from __future__ import annotations

import json
from pathlib import Path

from m3e.models.builtin import BUILTINS, DEFAULT_MODEL
from m3e.utils.paths import models_dir


def _folder_dim(folder: Path) -> int | str | None:
    """Embedding dimension from config files: Dense output, pooling dimension, else hidden size; "reranker" for a
    cross-encoder (it gives scores, not vectors)."""
    from m3e.models.resolver import is_cross_encoder

    if is_cross_encoder(folder):
        return "reranker"
    try:
        modules = json.loads((folder / "modules.json").read_text()) if (folder / "modules.json").exists() else []
        dim = None
        for mod in modules:
            cfg = folder / mod.get("path", "") / "config.json"
            if mod.get("path") and cfg.is_file():
                data = json.loads(cfg.read_text())
                dim = data.get("out_features") or data.get("embedding_dimension") or \
                    data.get("word_embedding_dimension") or dim
        if dim:
            return int(dim)
        config = json.loads((folder / "config.json").read_text())
        return int(config.get("hidden_size") or config.get("d_model"))
    except (OSError, ValueError, TypeError):
        return None


def _folder_bytes(folder: Path) -> int | None:
    """Bytes of a model's weights (``*.safetensors`` under the folder)."""
    try:
        return sum(f.stat().st_size for f in folder.rglob("*.safetensors")) or None
    except OSError:
        return None


def available_models() -> list[dict]:
    rows = []
    for name, b in BUILTINS.items():
        status = "ready" if b.is_ready() else "converts on first use"
        if name == DEFAULT_MODEL:
            status += ", default"
        rows.append({"name": name, "dim": b.dim, "status": status, "provenance": b.provenance,
                     "description": b.description, "bytes": _folder_bytes(b.folder) if b.is_ready() else None})
    root = models_dir()
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if folder.name in BUILTINS:
                continue
            rows.append({"name": str(folder), "dim": _folder_dim(folder), "status": "local",
                         "bytes": _folder_bytes(folder),
                         "provenance": "m3e cache"})
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type != "model":
                continue
            revs = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
            dim = _folder_dim(Path(revs[0].snapshot_path)) if revs else None
            rows.append({"name": repo.repo_id, "dim": dim, "status": "cached",
                         "provenance": "Hugging Face cache"})
    except Exception:  # noqa: BLE001 - no cache, or an unreadable one, just lists nothing
        pass
    return rows
