"""Our darts-clone charsmap against a naive per-codepoint replacement, through `tokenizers` itself."""

from __future__ import annotations

import random

import pytest
from tokenizers import normalizers

from m3e.models.charsmap import build_precompiled_charsmap


def naive(table: dict[int, str], text: str) -> str:
    return "".join(table.get(ord(ch), ch) for ch in text)


def test_random_table_matches_naive():
    rng = random.Random(7)
    pool = [c for c in range(0x21, 0x2FFFF) if not 0xD800 <= c < 0xE000]
    keys = rng.sample(pool, 3000)
    table = {k: "".join(chr(rng.choice(pool)) for _ in range(rng.randint(0, 3))) for k in keys}
    norm = normalizers.Precompiled(build_precompiled_charsmap(table))
    for key in keys:
        assert norm.normalize_str(chr(key)) == table[key], hex(key)
    others = [c for c in rng.sample(pool, 3000) if c not in table]
    for c in others:
        assert norm.normalize_str(chr(c)) == chr(c), hex(c)
    text = "".join(chr(rng.choice(keys + others)) for _ in range(200))
    assert norm.normalize_str(text) == naive(table, text)


def test_rejects_nul():
    with pytest.raises(ValueError, match="NUL"):
        build_precompiled_charsmap({0x41: "a\x00"})
