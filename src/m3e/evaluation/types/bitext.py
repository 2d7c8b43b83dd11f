"""Bitext mining: each source sentence finds its translation by nearest cosine; weighted F1 (MTEB)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m3e.data.skips import SkipReport
from m3e.evaluation.types.base import Encode, TaskType, text_field, unit


@dataclass
class BitextData:
    """Translation pairs: row i of ``sentences1`` is the translation of row i of ``sentences2``."""

    sentences1: list[str]
    sentences2: list[str]
    dropped: SkipReport = field(default_factory=SkipReport)

    def __len__(self) -> int:
        return len(self.sentences1)


def bitext_scores(src_emb: np.ndarray, tgt_emb: np.ndarray, gold: list[int] | None = None,
                  chunk: int = 256) -> dict[str, float]:
    """Nearest target by cosine for each source; accuracy and weighted precision/recall/F1 (main: f1)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    s, t = unit(src_emb), unit(tgt_emb)
    pred = np.concatenate([np.argmax(s[i:i + chunk] @ t.T, axis=1) for i in range(0, len(s), chunk)])
    gold = np.arange(len(s)) if gold is None else np.asarray(gold)
    return {
        "precision": float(precision_score(gold, pred, zero_division=0, average="weighted")),
        "recall": float(recall_score(gold, pred, zero_division=0, average="weighted")),
        "f1": float(f1_score(gold, pred, zero_division=0, average="weighted")),
        "accuracy": float(accuracy_score(gold, pred)),
    }


def score(data: BitextData, encode: Encode, params: dict) -> dict[str, float]:
    return bitext_scores(encode(data.sentences1, "sentence1"), encode(data.sentences2, "sentence2"))


def from_records(path: Path, records) -> BitextData:
    a, b = ("source", "target") if "source" in records[0][1] else ("sentence1", "sentence2")
    data = BitextData([], [])
    for no, row in records:
        data.sentences1.append(text_field(path, no, row, a))
        data.sentences2.append(text_field(path, no, row, b))
    return data


TYPE = TaskType(
    name="BitextMining", main_score="f1", prompts={"sentence1": "query", "sentence2": "query"}, category="bitext",
    score=score, fields="source, target (or sentence1, sentence2 without a label)",
    detect=lambda keys, records: {"source", "target"} <= keys or {"sentence1", "sentence2"} <= keys,
    from_records=from_records,
)
