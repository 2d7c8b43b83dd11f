"""Encoding and reranking with an exported ONNX model and nothing else: ONNX Runtime runs the whole graph
(transformer, pooling, dense layers; a reranker's classifier head), the model's own ``tokenizers`` file tokenizes,
numpy does the rest. Neither torch nor
sentence-transformers is imported, so ``m3e encode --backend onnx-int8`` and ``m3e serve`` start in about a second
and use less memory. The export itself (once per model version, checked against torch fp32) is
:mod:`m3e.models.onnx_backend`.

An export folder ``$M3E_HOME/onnx/<name>-<key>/`` holds ``model.onnx``, ``model_int8.onnx``, ``tokenizer.json``
and ``export.json`` (fidelity figures, and under ``runtime`` what encoding needs: special tokens, padding id,
dimension, max length, prompts).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from m3e.errors import InputError, M3EError
from m3e.models.encoding import EncodeStats, TextEncoder
from m3e.models.reranker import PairScorer

BACKENDS = ("torch", "onnx", "onnx-int8")
EXPORT_VERSION = 4  # 4: pooling and dense layers inside the graph, tokenizer and runtime facts beside it
FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}
TOKENIZER_FILE = "tokenizer.json"
MIN_MEAN_COSINE = 0.99
MIN_MIN_COSINE = 0.98  # no single vector of the fixed set may fall further than this
# The int8 guard of rerankers: mean Spearman of int8 vs fp32 scores over each fixed query's 36 documents (most of
# them unrelated to it, so their order among themselves is the noisy part), and the share of queries whose best
# document stays the same (the part a user sees). Measured on the trained m3e-reranker-small-zh candidate: mean
# 0.980, min 0.950, top-1 8/8.
MIN_RANK_CORRELATION = 0.95
MIN_TOP1_AGREEMENT = 0.75


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    return backend


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - a core dependency
        raise M3EError("the onnx backends need onnxruntime: pip install 'onnxruntime>=1.18'") from None
    return onnxruntime


def int8_kernels() -> str:
    """Which integer dot product this CPU gives ONNX Runtime's int8 MatMuls: "vnni" (AVX512-VNNI, AVX-VNNI or AMX:
    exact int32 sums), "arm-dot" (Arm dot product), else "avx2" (u8 x s8 pairs summed into int16, which saturates
    on large weights: such CPUs get 7-bit weights, ONNX Runtime's ``reduce_range``)."""
    import platform

    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags |= set(line.split(":", 1)[1].split())
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "vnni"
    if "asimddp" in flags or platform.machine().lower() in ("arm64", "aarch64") and not text:
        return "arm-dot"
    return "avx2"


def export_key(model_dir: Path | None, name: str) -> str:
    """A key that changes when the model's files change (path, names, sizes and modification times) or the CPU's
    int8 kernels do (an int8 file made for one is not reused on the other)."""
    h = hashlib.sha256(f"{EXPORT_VERSION}|{name}|{model_dir}|{int8_kernels()}".encode())
    if model_dir is not None and model_dir.is_dir():
        for f in sorted(model_dir.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                st = f.stat()
                h.update(f"{f.relative_to(model_dir)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def onnx_folder(model_dir: Path | None, name: str) -> Path:
    from m3e.utils.paths import m3e_home

    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("/").replace("/", "__"))[-60:]
    return m3e_home() / "onnx" / f"{slug}-{export_key(model_dir, name)}"


def open_session(path: Path, threads: int):
    ort = require_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class _OnnxSession:
    """What both ONNX runners hold: the session, the model's tokenizer.json, and the torch model on demand."""

    def _open(self, path: Path, runtime: dict, backend: str, threads: int, name: str, provenance: str,
              fidelity: dict | None, load_model) -> None:
        self.path, self.backend, self.fidelity = path, backend, fidelity or {}
        self.name, self.provenance, self.device = name, provenance, "cpu"
        self.session = open_session(path, threads)
        self.input_names = list(runtime["input_names"])
        self._tokenizer = _tokenizer(path.parent / TOKENIZER_FILE)
        self._load_model, self._model = load_model, None

    @property
    def model(self):
        """The sentence-transformers model (imports torch): for ``save`` and the mteb adapter only."""
        if self._model is None:
            if self._load_model is None:
                raise M3EError(f"{self.name}: no sentence-transformers model to load beside this ONNX export")
            self._model = self._load_model()
        return self._model

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Content token ids (no special tokens, no truncation), as the model's fast tokenizer gives them."""
        return [e.ids for e in self._tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

    def _forward(self, features: dict[str, np.ndarray]) -> np.ndarray:
        out = self.session.run(None, {k: features[k] for k in self.input_names})[0]
        return np.asarray(out, dtype=np.float32)


class OnnxEmbedder(_OnnxSession, TextEncoder):
    """An embedder whose forward pass is one ONNX Runtime session (ids -> pooled vectors); tokens, batches, windows
    and prompts are :class:`~m3e.models.encoding.TextEncoder`'s, as for torch."""

    def __init__(self, path: Path, runtime: dict, backend: str, threads: int, *, name: str, provenance: str = "",
                 fidelity: dict | None = None, load_model=None):
        self._open(path, runtime, backend, threads, name, provenance, fidelity, load_model)
        self.last_stats = EncodeStats()
        self._prefix, self._suffix = list(runtime["prefix"]), list(runtime["suffix"])
        self._pad_id = int(runtime["pad_id"])
        self._wants_token_types = "token_type_ids" in self.input_names
        self._dim, self._max_length = int(runtime["dim"]), int(runtime["max_length"])
        self._prompts = dict(runtime.get("prompts") or {})
        self.default_prompt_name = runtime.get("default_prompt_name")

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self._prompts)

    def save(self, path):
        from m3e.models.encoder import Embedder

        return Embedder.save(self, path)


class OnnxReranker(_OnnxSession, PairScorer):
    """A reranker whose forward pass is one ONNX Runtime session (pairs -> logits); the length policy, windows and
    batches are :class:`~m3e.models.reranker.PairScorer`'s, as for torch."""

    def __init__(self, path: Path, runtime: dict, backend: str, threads: int, *, name: str, provenance: str = "",
                 fidelity: dict | None = None, max_length: int | None = None, load_model=None):
        self._open(path, runtime, backend, threads, name, provenance, fidelity, load_model)
        self._set_template(runtime["template"], int(runtime["pad_id"]), "token_type_ids" in self.input_names)
        self._max_length = int(min(max_length or runtime["max_length"], 512))

    @property
    def max_length(self) -> int:
        return self._max_length

    def save(self, path) -> None:
        from m3e.models.reranker import Reranker

        Reranker.save(self, path)


def _tokenizer(path: Path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def exported(folder: Path, backend: str) -> dict | None:
    """``export.json`` of the export in ``folder`` (:func:`onnx_folder`) when it holds ``backend``'s file and the
    runtime facts, else None (not exported yet, an older export format, or no ``tokenizer.json``)."""
    try:
        meta = json.loads((folder / "export.json").read_text())
    except (OSError, ValueError):
        return None
    if FILES[backend] not in meta.get("files", {}) or "runtime" not in meta \
            or not (folder / TOKENIZER_FILE).is_file():
        return None
    return meta


def check_fidelity(meta: dict, backend: str, name: str) -> dict:
    """The export's measured fidelity, or an error when its mean cosine to torch fp32 is below the floor
    (``$M3E_ONNX_MIN_COSINE`` or 0.99) or any sentence's below 0.98."""
    fid = meta["files"][FILES[backend]]["fidelity"]
    floor = float(os.environ.get("M3E_ONNX_MIN_COSINE", MIN_MEAN_COSINE))
    worst = min(floor, MIN_MIN_COSINE)
    if fid["mean_cosine"] < floor or fid["min_cosine"] < worst:
        raise M3EError(f"{backend} vectors of {name} are too far from torch fp32 (mean cosine "
                       f"{fid['mean_cosine']:.4f}, min {fid['min_cosine']:.4f}; needed {floor} and {worst}); use "
                       "--backend onnx or torch (or set M3E_ONNX_MIN_COSINE to accept it)")
    return fid


def check_rank_fidelity(meta: dict, backend: str, name: str) -> dict:
    """The reranker export's measured ranking fidelity, or an error when its mean Spearman to torch fp32 is below the
    floor (``$M3E_ONNX_MIN_RANK`` or 0.95) or too few queries keep their best document."""
    fid = meta["files"][FILES[backend]]["fidelity"]
    floor = float(os.environ.get("M3E_ONNX_MIN_RANK", MIN_RANK_CORRELATION))
    agree, total = (int(x) for x in fid["top1_agree"].split("/"))
    top1 = min(floor / MIN_RANK_CORRELATION * MIN_TOP1_AGREEMENT, 1.0)  # M3E_ONNX_MIN_RANK=0 accepts anything
    if not fid["mean_spearman"] >= floor or agree < top1 * total:
        raise M3EError(f"{backend} scores of {name} rank documents too differently from torch fp32 (mean "
                       f"Spearman {fid['mean_spearman']:.4f}, needed {floor}; the same best document for "
                       f"{agree}/{total} queries, needed {top1:.0%}); use --backend onnx or torch (or set "
                       "M3E_ONNX_MIN_RANK to accept it)")
    return fid
