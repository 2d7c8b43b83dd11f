"""The texts a static model learns from: every distinct text of the training sources (after the test-overlap
filter), each with the role the teacher sees it in, and a fixed held-out slice of records for choosing settings.

Roles: an anchor is a query; a positive or negative of a source whose ``doc_instruction`` is ``passage`` is a
passage; every other text is a query (paraphrase data is symmetric). The static model has no prompts, so it
learns to stand in for the teacher under the prompt each text would get in use.

Held out: a record goes to validation when a hash of (source, anchor) falls under ``fraction``, so the split is
the same on every run and every machine; any text of a held-out record is kept out of training, even where
another record repeats it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from m3e.data.texthash import text_hash

ROLES = ("query", "passage")
BATCH = 4096  # records read from a source at a time


@dataclass
class Corpus:
    """Distinct texts with roles (training side), and the held-out records as pairs per source."""

    texts: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)  # sentences of the longer texts, not themselves a text
    sentence_roles: list[str] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)  # texts contributed per source (training side)
    # source -> {"kind": pair|triplet|scored, "pairs": [[anchor, positive, score|None], ...], "roles": [a, b]}
    held_out: dict[str, dict] = field(default_factory=dict)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for text, role in zip(self.texts + self.sentences, self.roles + self.sentence_roles, strict=True):
            h.update(role.encode())
            h.update(b"\x00")
            h.update(text.encode("utf-8"))
            h.update(b"\x01")
        h.update(json.dumps(self.held_out, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        return h.hexdigest()[:16]

    def validation_texts(self) -> tuple[list[str], list[str]]:
        """Distinct held-out texts and their roles (the teacher embeds these too)."""
        seen: dict[str, str] = {}
        for entry in self.held_out.values():
            a_role, p_role = entry["roles"]
            for a, p, _ in entry["pairs"]:
                seen.setdefault(a, a_role)
                seen.setdefault(p, p_role)
        return list(seen), list(seen.values())

    def save(self, folder: Path) -> None:
        from m3e.utils.atomic import write_text

        lines = "".join(json.dumps({"text": t, "role": r}, ensure_ascii=False) + "\n"
                        for t, r in zip(self.texts, self.roles, strict=True))
        lines += "".join(json.dumps({"text": t, "role": r, "sentence": True}, ensure_ascii=False) + "\n"
                         for t, r in zip(self.sentences, self.sentence_roles, strict=True))
        write_text(folder / "train.jsonl", lines)
        write_text(folder / "held_out.json", json.dumps(self.held_out, ensure_ascii=False))
        write_text(folder / "corpus.json", json.dumps({"texts": len(self.texts), "sentences": len(self.sentences),
                                                       "roles": dict(Counter(self.roles)),
                                                       "sources": self.sources, "fingerprint": self.fingerprint(),
                                                       "held_out": {k: len(v["pairs"])
                                                                    for k, v in self.held_out.items()}}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> Corpus:
        corpus = cls()
        with open(folder / "train.jsonl", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                texts, roles = (corpus.sentences, corpus.sentence_roles) if row.get("sentence") else \
                    (corpus.texts, corpus.roles)
                texts.append(row["text"])
                roles.append(row["role"])
        corpus.held_out = json.loads((folder / "held_out.json").read_text(encoding="utf-8"))
        corpus.sources = json.loads((folder / "corpus.json").read_text(encoding="utf-8"))["sources"]
        return corpus


def _held(source: str, anchor: str, fraction: float) -> bool:
    digest = hashlib.blake2b(f"{source}\x00{anchor}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


SENTENCE_MIN, SPLIT_OVER = 8, 64  # characters: shortest sentence kept, shortest text split


def build_corpus(sources, fraction: float = 0.02, max_pairs: int = 500, sentences: bool = False) -> Corpus:
    """Texts of ``sources`` (objects with ``name``, ``kind``, ``doc_instruction``, ``len`` and ``batch``);
    ``sentences``: also every sentence (of at least 8 characters) of texts over 64 characters, after the texts."""
    corpus = Corpus()
    held_hashes: set[int] = set()
    roles: dict[str, str] = {}  # text -> role, first seen wins (insertion order is the corpus order)
    order: list[tuple[str, str, str]] = []  # (text, role, source) in reading order
    for source in sources:
        doc_role = "passage" if source.doc_instruction == "passage" else "query"
        pairs = []
        for start in range(0, len(source), BATCH):
            for rec in source.batch(range(start, min(start + BATCH, len(source)))):
                if _held(source.name, rec.anchor, fraction):
                    if len(pairs) < max_pairs:
                        pairs.append([rec.anchor, rec.positive, rec.score])
                    held_hashes.update(text_hash(t) for t in (rec.anchor, rec.positive, *rec.negatives))
                    continue
                order.append((rec.anchor, "query", source.name))
                for text in (rec.positive, *rec.negatives):
                    order.append((text, doc_role, source.name))
        if pairs:
            corpus.held_out[source.name] = {"kind": source.kind, "pairs": pairs, "roles": ["query", doc_role]}
    counts: Counter = Counter()
    for text, role, name in order:
        if text in roles or text_hash(text) in held_hashes:
            continue
        roles[text] = role
        counts[name] += 1
    corpus.texts = list(roles)
    corpus.roles = list(roles.values())
    corpus.sources = dict(counts)
    if sentences:
        from m3e.search.chunking import sentence_spans

        extra: dict[str, str] = {}
        for text, role in roles.items():
            if len(text) <= SPLIT_OVER:
                continue
            for s, e in sentence_spans(text):
                piece = text[s:e].strip()
                if len(piece) >= SENTENCE_MIN and piece != text and piece not in roles and piece not in extra \
                        and text_hash(piece) not in held_hashes:
                    extra[piece] = role
        corpus.sentences = list(extra)
        corpus.sentence_roles = list(extra.values())
    return corpus
