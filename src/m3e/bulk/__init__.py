"""Embedding whole corpora: streamed input, sharded parquet output, resumable; Ray Data when one machine is not
enough (:mod:`m3e.bulk.ray_engine`)."""
