"""m3e: Chinese-first text embeddings in the M3E style: use, train, evaluate and serve them."""

from m3e.errors import M3EError
from m3e.models import DEFAULT_MODEL, Embedder, load_model

__version__ = "0.1.0"
__all__ = ["DEFAULT_MODEL", "Embedder", "M3EError", "__version__", "load_model"]
