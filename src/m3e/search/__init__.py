"""Semantic search over your own documents: chunking, an on-disk index, BM25 hybrid search."""

from m3e.search.chunking import Chunk, chunk_text
from m3e.search.index import Hit, Index

__all__ = ["Chunk", "Hit", "Index", "chunk_text"]
