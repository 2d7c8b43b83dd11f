"""Thin adapters so LangChain, LlamaIndex and Chroma use m3e models: queries get the model's query prompt,
documents its passage prompt, vectors are unit length. Each imports its library only when used."""

from __future__ import annotations


def resolve_embedder(model=None, **load_kwargs):
    """An :class:`m3e.models.encoder.Embedder` as given, or loaded by name (the one resolver) with ``load_kwargs``."""
    if model is not None and hasattr(model, "encode") and hasattr(model, "prompts"):
        return model
    from m3e.models.resolver import load_model

    return load_model(model, **load_kwargs)


def resolve_reranker(model, **load_kwargs):
    """An :class:`m3e.models.reranker.Reranker` as given, or loaded by name through the one resolver."""
    if getattr(model, "kind", "") == "reranker":
        return model
    from m3e.models.resolver import load_reranker

    return load_reranker(model, **load_kwargs)


def prompt_names(embedder) -> tuple[str | None, str | None]:
    """(query prompt name, document prompt name) the model has, else None for plain encoding."""
    from m3e.models.encoding import role_prompt

    return role_prompt(embedder, "query"), role_prompt(embedder, "passage")
