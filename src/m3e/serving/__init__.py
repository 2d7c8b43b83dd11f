"""`m3e serve`: an OpenAI-compatible embeddings server with dynamic batching, limits, auth and metrics."""
