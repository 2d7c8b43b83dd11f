"""Token-id inputs: LangChain's OpenAIEmbeddings sends cl100k token ids by default.

We decode them back to text with tiktoken when a cl100k table is available without the network: a
``cl100k_base.tiktoken`` file given by ``--cl100k-file`` / ``$M3E_CL100K_FILE``, or one already in tiktoken's
cache. Otherwise the request is refused with a message that tells the user how to send text instead.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                  r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
CL100K_SPECIAL = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                  "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}
NO_TABLE = ("input is token ids, but this server has no cl100k table to decode them offline; send text "
            "instead (LangChain: OpenAIEmbeddings(..., check_embedding_ctx_length=False)) or start the server "
            "with --cl100k-file PATH")


def _cached_table() -> Path | None:
    folder = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or \
        os.path.join(tempfile.gettempdir(), "data-gym-cache")
    path = Path(folder) / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    return path if path.is_file() else None


@lru_cache(maxsize=4)
def cl100k(table: str | None):
    """A tiktoken Encoding from a local table file, or None when none is available."""
    path = Path(table) if table else _cached_table()
    if path is None or not path.is_file():
        return None
    try:
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe
    except ImportError:
        return None
    ranks = load_tiktoken_bpe(str(path))
    return tiktoken.Encoding("cl100k_base", pat_str=CL100K_PATTERN, mergeable_ranks=ranks,
                             special_tokens=CL100K_SPECIAL)
