"""Model loading, encoding and reranking: the resolver, built-in models, the encoder and the reranker."""

from m3e.models.builtin import BUILTINS, DEFAULT_MODEL
from m3e.models.encoder import Embedder, EncodeStats
from m3e.models.reranker import Reranker
from m3e.models.resolver import default_model_name, load_model, load_reranker, resolve

__all__ = ["BUILTINS", "DEFAULT_MODEL", "EncodeStats", "Embedder", "Reranker", "default_model_name", "load_model",
           "load_reranker", "resolve"]
