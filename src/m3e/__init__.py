"""m3e: Chinese-first text embeddings in the M3E style: use, train, evaluate and serve them.

Attributes load lazily so that `m3e --help` and input checks answer before torch is imported.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["DEFAULT_MODEL", "Embedder", "M3EError", "Reranker", "__version__", "load_model", "load_reranker"]


def __getattr__(name: str):
    if name == "M3EError":
        from m3e.errors import M3EError

        return M3EError
    if name in ("DEFAULT_MODEL", "Embedder", "Reranker", "load_model", "load_reranker"):
        import m3e.models as models

        return getattr(models, name)
    raise AttributeError(f"module 'm3e' has no attribute {name!r}")
