"""Model loading, encoding and reranking: the resolver, built-in models, the encoder and the reranker.

The torch-based classes load on first use, so ``load_model(name, backend="onnx-int8")`` of an exported model runs
without importing torch or sentence-transformers.
"""

from m3e.models.builtin import BUILTINS, DEFAULT_MODEL
from m3e.models.encoding import EncodeStats
from m3e.models.resolver import default_model_name, load_model, load_reranker, resolve

__all__ = ["BUILTINS", "DEFAULT_MODEL", "EncodeStats", "Embedder", "Reranker", "default_model_name", "load_model",
           "load_reranker", "resolve"]


def __getattr__(name: str):
    if name == "Embedder":
        from m3e.models.encoder import Embedder

        return Embedder
    if name == "Reranker":
        from m3e.models.reranker import Reranker

        return Reranker
    raise AttributeError(f"module 'm3e.models' has no attribute {name!r}")
