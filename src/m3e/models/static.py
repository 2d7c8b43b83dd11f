"""Static embedding models (one vector per token, averaged; no attention at run time) behind the same
:class:`~m3e.models.encoder.Embedder` interface as transformers, so encode, eval, serve, bulk encode and search
take them unchanged.

The model is a sentence-transformers ``StaticEmbedding`` module (model2vec's format loads as one), so its vectors
are sentence-transformers' own: the mean of the token rows, normalized. What this class adds is speed on the
paths m3e owns: the server and the bulk encoder hand it token-id units, which it averages with one
``embedding_bag`` call per chunk instead of a padded forward pass per batch.
"""

from __future__ import annotations

import numpy as np
import torch

from m3e.models.encoder import Embedder
from m3e.models.encoding import EncodeStats

# A static model has no position table, so no length limit of its own; this only keeps arithmetic finite.
NO_LIMIT = 1 << 24
CHUNK_TOKENS = 1 << 20  # tokens averaged per embedding_bag call (8 MB of int64 ids)


def is_static(st_model) -> bool:
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    return len(st_model) > 0 and isinstance(st_model[0], StaticEmbedding)


class StaticEmbedder(Embedder):
    """An :class:`Embedder` for a sentence-transformers model whose first module is ``StaticEmbedding``."""

    def __init__(self, model, *, name: str = "model", provenance: str = "", dtype: str = "auto"):
        from sentence_transformers.sentence_transformer.modules import Normalize

        self.model = model
        self.name = name
        self.provenance = provenance
        self.static = model[0]
        self.tokenizer = self.static.tokenizer  # a `tokenizers.Tokenizer`
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.device = str(model.device)
        self.amp_dtype = None
        self.last_stats = EncodeStats()
        self.backend = "torch"
        self._prefix, self._suffix = [], []
        self._pad_id = 0
        self._wants_token_types = False
        self._modules = [m for m in model if not isinstance(m, Normalize)]

    @property
    def dim(self) -> int:
        return int(self.static.embedding_dim)

    @property
    def max_length(self) -> int:
        return NO_LIMIT

    @property
    def weight(self) -> torch.Tensor:
        return self.static.embedding.weight

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

    def embed_units(self, units: list[list[int]], batch_size: int = 64, max_batch_tokens: int = 16384,
                    show_progress: bool | None = False, stats: EncodeStats | None = None) -> np.ndarray:
        """Mean token row of each unit (an empty unit gives zeros, as in sentence-transformers)."""
        stats = stats if stats is not None else EncodeStats()
        weight = self.weight.detach()
        out = torch.empty(len(units), self.dim, dtype=torch.float32)
        lengths = np.fromiter((len(u) for u in units), dtype=np.int64, count=len(units))
        start = 0
        with torch.inference_mode():
            while start < len(units):
                # A chunk ends where its tokens pass the budget (at least one unit per chunk).
                cum = np.cumsum(lengths[start:])
                end = start + max(1, int(np.searchsorted(cum, CHUNK_TOKENS, side="right")))
                chunk = units[start:end]
                n_tokens = int(cum[end - start - 1])
                flat = np.fromiter((t for u in chunk for t in u), dtype=np.int64, count=n_tokens)
                offsets = np.zeros(len(chunk), dtype=np.int64)
                np.cumsum(lengths[start:end - 1], out=offsets[1:])
                pooled = torch.nn.functional.embedding_bag(
                    torch.from_numpy(flat).to(weight.device), weight, torch.from_numpy(offsets).to(weight.device),
                    mode="mean")
                out[start:end] = pooled.float().cpu()
                stats.tokens += n_tokens
                stats.batches += 1
                start = end
        return out.numpy()
