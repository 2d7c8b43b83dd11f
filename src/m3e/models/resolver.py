"""The one model resolver: every command, the trainer, the evaluator and the server load through it.

A model name may be a built-in name, a local sentence-transformers folder, a plain Hugging Face
transformer folder (mean pooling is added), or a hub id resolved through the normal Hugging Face cache.
Weights load from safetensors only, and ``trust_remote_code`` stays off unless asked for.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from m3e.errors import InputError, ModelNotFoundError
from m3e.models.builtin import BUILTINS, DEFAULT_MODEL

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def default_model_name() -> str:
    """``$M3E_MODEL`` if set, else the built-in default."""
    return os.environ.get("M3E_MODEL") or DEFAULT_MODEL


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name points, before any weights are loaded."""

    name: str
    path: Path
    kind: str  # "builtin" | "sentence-transformers" | "transformers" | "cross-encoder"
    provenance: str

    @property
    def role(self) -> str:
        """"reranker" for a cross-encoder (a query and a document read together), else "embedder"."""
        return "reranker" if self.kind == "cross-encoder" or is_cross_encoder(self.path) else "embedder"


def is_cross_encoder(folder: Path) -> bool:
    """A sentence-transformers CrossEncoder folder (v4+ writes ``model_type: CrossEncoder``), or a plain
    transformers sequence-classification folder (how most hub rerankers, e.g. bge-reranker, are published)."""
    import json

    try:
        st_cfg = folder / "config_sentence_transformers.json"
        if st_cfg.is_file() and json.loads(st_cfg.read_text()).get("model_type") == "CrossEncoder":
            return True
        if (folder / "modules.json").is_file():
            return False
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def _has_safetensors(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json"))


def _check_folder(folder: Path, name: str) -> str:
    """Classify a local folder and refuse pickle-only weights."""
    if not folder.is_dir():
        raise ModelNotFoundError(f"Model path {folder} is not a folder.")
    is_st = (folder / "modules.json").is_file()
    if not is_st and not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"{folder} is neither a sentence-transformers folder (no modules.json) nor a Hugging Face "
            "model folder (no config.json)."
        )
    if not _has_safetensors(folder):
        pickles = [p for p in _PICKLE_WEIGHTS if (folder / p).exists()]
        if pickles:
            raise ModelNotFoundError(
                f"{folder} holds weights only as {', '.join(pickles)}; m3e loads safetensors only, "
                "never pickled files. Convert them once with a trusted tool, e.g. "
                "`python -c \"from transformers import AutoModel; "
                "AutoModel.from_pretrained('DIR').save_pretrained('DIR', safe_serialization=True)\"`."
            )
        if not is_st:
            raise ModelNotFoundError(f"{folder} has a config.json but no *.safetensors weights.")
    if is_cross_encoder(folder):
        return "cross-encoder"
    return "sentence-transformers" if is_st else "transformers"


def _from_hub_cache(repo_id: str) -> Path:
    """Resolve a hub id via the Hugging Face cache, going online only where that is allowed."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        raise ModelNotFoundError(f"{repo_id}: huggingface_hub is not installed.") from None

    ignore = ["*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ckpt", "*.onnx", "*.ot", "*.gguf"]
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, ignore_patterns=ignore))
    except LocalEntryNotFoundError:
        pass
    except Exception:  # noqa: BLE001 - a broken cache entry reads as "not cached"
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    reason = "HF_HUB_OFFLINE is set"
    if not offline:
        try:
            return Path(snapshot_download(repo_id, ignore_patterns=ignore))
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
            reason = f"the hub could not be reached or refused it ({type(exc).__name__})"
        except Exception as exc:  # noqa: BLE001 - network stacks raise many types
            reason = f"the hub could not be reached ({type(exc).__name__})"
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
    raise ModelNotFoundError(
        f"Model '{repo_id}' is not in the Hugging Face cache ({cache}) and {reason}. Fix: download it "
        f"once where huggingface.co (or a mirror via HF_ENDPOINT) is reachable, e.g. `huggingface-cli "
        f"download {repo_id}`, then copy the cache here; or pass the path of a local model folder; or "
        f"use a built-in model ({', '.join(BUILTINS)})."
    )


def resolve(name: str | None = None) -> ResolvedModel:
    """Turn a user's model name into a local folder (converting or downloading as needed)."""
    name = name or default_model_name()
    if name in BUILTINS:
        b = BUILTINS[name]
        return ResolvedModel(name=name, path=b.ensure(), kind="builtin", provenance=b.provenance)
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")) or os.sep in name and not _HUB_ID.match(name):
        if not path.exists():
            raise ModelNotFoundError(f"Model folder {path} does not exist.")
        kind = _check_folder(path, name)
        return ResolvedModel(name=name, path=path.resolve(), kind=kind, provenance=f"local folder {path}")
    if _HUB_ID.match(name):
        folder = _from_hub_cache(name)
        kind = _check_folder(folder, name)
        return ResolvedModel(name=name, path=folder, kind=kind, provenance=f"Hugging Face hub {name}")
    raise ModelNotFoundError(
        f"Unknown model '{name}'. Use a built-in name ({', '.join(BUILTINS)}), a local model folder, "
        "or a Hugging Face hub id such as moka-ai/m3e-base. `m3e models` lists what is available."
    )


def load_model(
    name: str | None = None,
    *,
    device: str | None = None,
    trust_remote_code: bool = False,
    threads: int | None = None,
    dtype: str = "auto",
    backend: str = "torch",
    log=None,
):
    """Resolve ``name`` and return an embedder: :class:`m3e.models.encoder.Embedder` (torch), or for ``backend``
    "onnx" / "onnx-int8" an :class:`m3e.models.onnx_runtime.OnnxEmbedder` (ONNX Runtime on CPU). An ONNX export is
    made and checked against torch fp32 on first use (``log`` receives the one-time export messages); after that
    loading it imports neither torch nor sentence-transformers.
    """
    from m3e.models.onnx_runtime import FILES, OnnxEmbedder, check_backend, check_fidelity, exported, onnx_folder

    check_backend(backend)
    resolved = resolve(name)
    if resolved.role == "reranker":
        raise InputError(f"{resolved.name} is a reranker (a cross-encoder: it scores a query and a document "
                         "together, it gives no vectors); pass it where a reranker is expected (--reranker, "
                         "--rerank, load_reranker)")

    def load_st(on: str = "cpu"):
        return _load_sentence_transformer(resolved, device=on, trust_remote_code=trust_remote_code)

    if backend != "torch":
        if device not in (None, "auto") and not str(device).startswith("cpu"):
            raise InputError(f"the {backend} backend runs on CPU; on {device} use --backend torch (bf16/fp16 "
                             "autocast)")
        from m3e.models.encoding import cpu_threads

        used = cpu_threads(threads)
        folder = onnx_folder(resolved.path, resolved.name)
        meta = exported(folder, backend)
        if meta is not None:
            return OnnxEmbedder(folder / FILES[backend], meta["runtime"], backend,
                                used, name=resolved.name, provenance=resolved.provenance,
                                fidelity=check_fidelity(meta, backend, resolved.name), load_model=load_st)
    from m3e.models.encoder import Embedder, pick_device, set_threads
    from m3e.models.static import StaticEmbedder, is_static

    used = set_threads(threads)
    device = pick_device(device if backend == "torch" else "cpu")
    st = load_st(device)
    if is_static(st):
        if backend != "torch":
            raise InputError(f"{resolved.name} is a static model (a table of token vectors, no transformer): "
                             f"--backend {backend} does not apply; it is already the fastest path")
        return StaticEmbedder(st, name=resolved.name, provenance=resolved.provenance)
    embedder = Embedder(st, name=resolved.name, provenance=resolved.provenance, dtype=dtype)
    if backend == "torch":
        return embedder
    from m3e.models.onnx_backend import export_embedder

    return export_embedder(embedder, backend, resolved.path, used, log=log, load_model=load_st)


def load_reranker(
    name: str,
    *,
    device: str | None = None,
    trust_remote_code: bool = False,
    threads: int | None = None,
    backend: str = "torch",
    max_length: int | None = None,
    log=None,
):
    """Resolve ``name`` and return a reranker (a CrossEncoder folder, a hub id or a built-in reranker):
    :class:`m3e.models.reranker.Reranker` (torch), or for ``backend`` "onnx" / "onnx-int8" an
    :class:`m3e.models.onnx_runtime.OnnxReranker` (exported and checked on first use, then loaded without torch).
    An embedding model here is a clear error."""
    from m3e.models.onnx_runtime import FILES, OnnxReranker, check_backend, check_rank_fidelity, exported, onnx_folder

    check_backend(backend)
    resolved = resolve(name)
    if resolved.role != "reranker":
        raise InputError(f"{resolved.name} is an embedding model (it turns one text into a vector), not a reranker "
                         "(a cross-encoder that reads a query and a document together); use it as --model, or "
                         "name a CrossEncoder folder or hub id such as BAAI/bge-reranker-base")

    def load_ce(on: str = "cpu"):
        from sentence_transformers import CrossEncoder
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            return CrossEncoder(str(resolved.path), device=on, local_files_only=True,
                                trust_remote_code=trust_remote_code, model_kwargs={"use_safetensors": True})
        except ValueError as exc:
            if "trust_remote_code" in str(exc):
                raise ModelNotFoundError(f"{resolved.name} needs custom code from its repository. m3e runs none by "
                                         "default; pass --trust-remote-code only if you trust its authors.") from None
            raise

    if backend != "torch":
        if device not in (None, "auto") and not str(device).startswith("cpu"):
            raise InputError(f"the {backend} backend runs on CPU; on {device} use --backend torch")
        from m3e.models.encoding import cpu_threads

        used = cpu_threads(threads)
        folder = onnx_folder(resolved.path, resolved.name + "-rerank")
        meta = exported(folder, backend)
        if meta is not None:
            return OnnxReranker(folder / FILES[backend], meta["runtime"], backend, used, name=resolved.name,
                                provenance=resolved.provenance,
                                fidelity=check_rank_fidelity(meta, backend, resolved.name), max_length=max_length,
                                load_model=load_ce)
    from m3e.models.encoder import pick_device, set_threads
    from m3e.models.reranker import Reranker

    used = set_threads(threads)
    device = pick_device(device if backend == "torch" else "cpu")
    reranker = Reranker(load_ce(device), name=resolved.name, provenance=resolved.provenance, max_length=max_length)
    if backend == "torch":
        return reranker
    from m3e.models.onnx_backend import export_reranker

    return export_reranker(reranker, backend, resolved.path, used, log=log, load_model=load_ce,
                           max_length=max_length)


def load_any(name: str | None = None, **kwargs):
    """An embedder or a reranker, whichever ``name`` is (for commands that take both, e.g. a second stage)."""
    if name is not None and resolve(name).role == "reranker":
        kwargs.pop("dtype", None)
        return load_reranker(name, **kwargs)
    return load_model(name, **kwargs)


def _load_sentence_transformer(resolved: ResolvedModel, *, device: str, trust_remote_code: bool):
    from sentence_transformers import SentenceTransformer, models
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars are noise for our users
    kwargs = {"use_safetensors": True}
    try:
        if resolved.kind == "transformers":
            word = models.Transformer(str(resolved.path), model_args=kwargs,
                                      config_args={"trust_remote_code": trust_remote_code},
                                      tokenizer_args={"trust_remote_code": trust_remote_code})
            pooling = models.Pooling(_dim(word), pooling_mode="mean")
            return SentenceTransformer(modules=[word, pooling], device=device,
                                       trust_remote_code=trust_remote_code)
        return SentenceTransformer(str(resolved.path), device=device, local_files_only=True,
                                   trust_remote_code=trust_remote_code, model_kwargs=kwargs)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ModelNotFoundError(
                f"{resolved.name} needs custom code from its repository. m3e runs none by default; "
                "pass --trust-remote-code only if you trust its authors."
            ) from None
        raise


def _dim(module) -> int:
    get = getattr(module, "get_embedding_dimension", None) or module.get_word_embedding_dimension
    return int(get())
