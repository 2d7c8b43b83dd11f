"""The torch backend: encoding with a sentence-transformers model's own modules (so vectors equal
sentence-transformers' own), on CPU or GPU, and saving it as a sentence-transformers folder. What is shared with
the ONNX Runtime backend (tokens, batches, windows, prompts) lives in :mod:`m3e.models.encoding`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from m3e.errors import InputError
from m3e.models.encoding import EncodeStats, TextEncoder, cpu_threads, hf_tokenize, special_framing


def set_threads(threads: int | None = None) -> int:
    """Pin torch's CPU threads: ``threads``, else ``$M3E_THREADS``, else the CPUs we may use."""
    threads = cpu_threads(threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def pick_device(device: str | None) -> str:
    """``device`` checked against this torch build (a clear error, not a CUDA traceback), or the best one."""
    if device and device != "auto":
        try:
            kind = torch.device(device).type
        except (RuntimeError, ValueError):
            raise InputError(f"unknown device '{device}'; use cpu, cuda, cuda:N, mps or auto") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device '{device}': no CUDA GPU is usable here (torch {torch.__version__}); use "
                             "--device cpu")
        if kind == "cuda" and torch.device(device).index is not None and \
                torch.device(device).index >= torch.cuda.device_count():
            raise InputError(f"device '{device}': this machine has {torch.cuda.device_count()} CUDA device(s)")
        if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError(f"device '{device}': MPS is not available here; use --device cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Embedder(TextEncoder):
    """A loaded sentence-transformers model: ``encode`` texts to numpy vectors, ``save`` as a sentence-transformers
    folder."""

    def __init__(self, model, *, name: str = "model", provenance: str = "", dtype: str = "auto"):
        self.model = model
        self.name = name
        self.provenance = provenance
        self.tokenizer = model.tokenizer
        self.device = str(model.device)
        self.amp_dtype = _amp_dtype(self.device, dtype)
        self.last_stats = EncodeStats()
        self.backend = "torch"
        self._prefix, self._suffix = special_framing(self.tokenizer)
        self._pad_id = self.tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = self.tokenizer.eos_token_id or 0
        self._wants_token_types = "token_type_ids" in getattr(self.tokenizer, "model_input_names", [])
        from sentence_transformers.models import Normalize

        self._modules = [m for m in model if not isinstance(m, Normalize)]

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None)
        get = get or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_length(self) -> int:
        return int(self.model.max_seq_length or 512)

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self.model.prompts or {})

    @property
    def default_prompt_name(self) -> str | None:
        return getattr(self.model, "default_prompt_name", None)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return hf_tokenize(self.tokenizer, texts)

    def _forward(self, features: dict[str, np.ndarray]) -> np.ndarray:
        tensors = {k: torch.from_numpy(v).to(self.device) for k, v in features.items()}
        ctx = (torch.autocast(device_type="cuda", dtype=self.amp_dtype)
               if self.amp_dtype is not None else _nullcontext())
        with torch.inference_mode(), ctx:
            for module in self._modules:
                tensors = module(tensors)
        return tensors["sentence_embedding"].float().cpu().numpy()

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a sentence-transformers folder (prompts and pooling kept) atomically."""
        from m3e.utils.atomic import atomic_dir

        target = Path(path)
        if target.exists() and any(target.iterdir()):
            raise InputError(f"{target} exists and is not empty; choose a new folder")
        if target.exists():
            target.rmdir()
        with atomic_dir(target) as tmp:
            self.model.save(str(tmp))
        return target


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _amp_dtype(device: str, dtype: str):
    if dtype not in ("auto", "float32", "float16", "bfloat16"):
        raise InputError(f"dtype must be auto, float32, float16 or bfloat16, got '{dtype}'")
    if not device.startswith("cuda") or dtype == "float32":
        return None
    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, dtype)


