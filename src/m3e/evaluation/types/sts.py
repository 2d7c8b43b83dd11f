"""STS: how close each pair's similarity ranks to a graded gold score (Spearman of cosine, as MTEB).

Also home of :class:`PairData` and the pair-file readers, which pair classification shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

from m3e.data.skips import SkipReport
from m3e.errors import InputError
from m3e.evaluation.data import jsonl_rows, lines
from m3e.evaluation.types.base import Encode, TaskType, number_field, text_field


@dataclass
class PairData:
    """STS and pair classification: two aligned text columns and a label per pair (graded score or 0/1)."""

    sentences1: list[str]
    sentences2: list[str]
    labels: list[float]
    dropped: SkipReport = field(default_factory=SkipReport)

    def __len__(self) -> int:
        return len(self.labels)


def similarities(a: np.ndarray, b: np.ndarray) -> dict[str, tuple[np.ndarray, bool]]:
    """name -> (scores, higher_means_more_similar), as MTEB computes them."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return {
        "cosine": (1 - paired_cosine_distances(a, b), True),
        "manhattan": (paired_manhattan_distances(a, b), False),
        "euclidean": (paired_euclidean_distances(a, b), False),
        "dot": (np.einsum("ij,ij->i", a, b), True),
    }


def sts_scores(a: np.ndarray, b: np.ndarray, gold) -> dict[str, float]:
    """Pearson and Spearman of each similarity against gold scores; main score: cosine_spearman."""
    gold = np.asarray(gold, dtype=np.float64)
    out: dict[str, float] = {}
    for name, (scores, higher) in similarities(a, b).items():
        s = scores if higher else -scores
        out[f"{name}_pearson"] = float(pearsonr(gold, s).statistic)
        out[f"{name}_spearman"] = float(spearmanr(gold, s).statistic)
    return out


def encode_pairs(data: PairData, encode: Encode) -> tuple[np.ndarray, np.ndarray]:
    return encode(data.sentences1, "sentence1"), encode(data.sentences2, "sentence2")


def score(data: PairData, encode: Encode, params: dict) -> dict[str, float]:
    return sts_scores(*encode_pairs(data, encode), data.labels)


# --- readers ---------------------------------------------------------------------------------------------------

def collect_pairs(path: Path, rows: Iterable, label_map: dict[str, float] | None) -> PairData:
    """Turn ``(line, sentence1, sentence2, raw label)`` rows into PairData; unmapped labels are counted."""
    data = PairData([], [], [])
    for no, a, b, raw in rows:
        if label_map is not None:
            if raw not in label_map:
                data.dropped.add(f"label {raw}")
                continue
            value = label_map[raw]
        else:
            try:
                value = float(raw)
            except ValueError:
                raise InputError(f"{path}:{no}: label '{raw}' is not a number") from None
        for key, text in (("sentence1", a), ("sentence2", b)):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"{path}:{no}: {key} is empty or not a string")
        data.sentences1.append(a)
        data.sentences2.append(b)
        data.labels.append(value)
    return data


def load_tsv_pairs(path: Path, label_map: dict[str, float] | None = None) -> PairData:
    """``sentence1<TAB>sentence2<TAB>label`` rows; ``label_map`` maps string labels (others are dropped)."""

    def rows():
        for no, line in lines(path):
            parts = line.split("\t")
            if len(parts) != 3:
                raise InputError(f"{path}:{no}: expected 3 tab-separated fields, found {len(parts)}")
            yield no, *parts

    return collect_pairs(path, rows(), label_map)


def load_jsonl_pairs(path: Path, label_map: dict[str, float] | None = None, label_key: str = "label") -> PairData:
    """JSON lines with sentence1, sentence2 and a label (int, float or string)."""

    def rows():
        for no, row in jsonl_rows(path):
            for key in ("sentence1", "sentence2", label_key):
                if key not in row:
                    raise InputError(f"{path}:{no}: missing field '{key}'")
            yield no, row["sentence1"], row["sentence2"], str(row[label_key])

    return collect_pairs(path, rows(), label_map)


def pairs_from_records(path: Path, records, label_key: str, binary: bool = False) -> PairData:
    data = PairData([], [], [])
    for no, row in records:
        data.sentences1.append(text_field(path, no, row, "sentence1"))
        data.sentences2.append(text_field(path, no, row, "sentence2"))
        value = number_field(path, no, row, label_key)
        if binary and value not in (0.0, 1.0):
            raise InputError(f"{path}:{no}: label must be 0 or 1, found {row[label_key]!r}")
        data.labels.append(value)
    return data


TYPE = TaskType(
    name="STS", main_score="cosine_spearman", prompts={"sentence1": "query", "sentence2": "query"}, category="s2s",
    score=score, fields="sentence1, sentence2, score",
    detect=lambda keys, records: {"sentence1", "sentence2", "score"} <= keys,
    from_records=lambda path, records: pairs_from_records(path, records, "score"),
)
