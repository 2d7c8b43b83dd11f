"""Model loading and encoding: the resolver, built-in models and the encoder."""

from m3e.models.builtin import BUILTINS, DEFAULT_MODEL
from m3e.models.encoder import Embedder, EncodeStats
from m3e.models.resolver import default_model_name, load_model, resolve

__all__ = ["BUILTINS", "DEFAULT_MODEL", "EncodeStats", "Embedder", "default_model_name", "load_model",
           "resolve"]
