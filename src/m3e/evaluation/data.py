"""What each task type evaluates on, and the file readers the built-in and custom tasks share.

Every reader names file and line on bad rows; rows that are skipped on purpose (a dropped label, a duplicate
text, an empty review) are counted per reason in ``dropped`` and reported with the scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from m3e.data.rows import csv_dicts, jsonl_objects, numbered_lines
from m3e.errors import InputError


@dataclass
class PairData:
    """STS and pair classification: two aligned text columns and a label per pair (graded score or 0/1)."""

    sentences1: list[str]
    sentences2: list[str]
    labels: list[float]
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class LabelledData:
    """Classification (train pool + test) and clustering (``texts`` only): texts with a class label each."""

    texts: list[str]
    labels: list[str]
    train_texts: list[str] = field(default_factory=list)
    train_labels: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class RetrievalData:
    """Queries against one corpus; ``qrels[i]`` maps relevant document ids of query i to a grade (> 0)."""

    queries: list[str]
    corpus: list[str]
    doc_ids: list[str]
    qrels: list[dict[str, int]]
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.queries)


@dataclass
class RerankingData:
    """Each query with its own candidate list; ``relevance[i][j]`` grades candidate j of query i (0 = not)."""

    queries: list[str]
    candidates: list[list[str]]
    relevance: list[list[int]]
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.queries)


@dataclass
class BitextData:
    """Translation pairs: row i of ``sentences1`` is the translation of row i of ``sentences2``."""

    sentences1: list[str]
    sentences2: list[str]
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sentences1)


def count(dropped: dict[str, int], reason: str, n: int = 1) -> None:
    if n:
        dropped[reason] = dropped.get(reason, 0) + n


def need(path: Path) -> Path:
    if not path.is_file():
        raise InputError(
            f"missing data file {path} (dataset folder {path.parent}); point --data-dir or $M3E_DATA_DIR at "
            "the folder that holds the dataset folders"
        )
    return path


def read_text(path: Path) -> str:
    try:
        return need(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def lines(path: Path) -> list[tuple[int, str]]:
    return list(numbered_lines(read_text(path)))


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    return jsonl_objects(path, read_text(path))


def csv_rows(path: Path, text: str | None = None, delimiter: str = ",") -> Iterator[tuple[int, dict]]:
    """Rows of a CSV/TSV with a header line, as dicts; the number is the file line the row starts on."""
    return csv_dicts(path, read_text(path) if text is None else text, delimiter)


def field_text(path: Path, no: int, row: dict, key: str) -> str:
    if key not in row or row[key] is None:
        raise InputError(f"{path}:{no}: missing field '{key}'")
    value = row[key]
    if not isinstance(value, str):
        raise InputError(f"{path}:{no}: field '{key}' must be a string, found {type(value).__name__}")
    return value


def collect_pairs(path: Path, rows: Iterable, label_map: dict[str, float] | None) -> PairData:
    """Turn ``(line, sentence1, sentence2, raw label)`` rows into PairData; unmapped labels are counted."""
    data = PairData([], [], [])
    for no, a, b, raw in rows:
        if label_map is not None:
            if raw not in label_map:
                count(data.dropped, f"label {raw}")
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


def clean_labelled(path: Path, rows: Iterable[tuple[int, str, str]], min_per_label: int = 1) -> LabelledData:
    """(line, text, label) rows -> LabelledData without empty or duplicate texts or too-rare labels (counted)."""
    data = LabelledData([], [])
    seen: set[str] = set()
    for _no, text, label in rows:
        if not text.strip():
            count(data.dropped, "empty text")
            continue
        if text in seen:
            count(data.dropped, "duplicate text")
            continue
        seen.add(text)
        data.texts.append(text)
        data.labels.append(str(label))
    if min_per_label > 1:
        sizes: dict[str, int] = {}
        for lab in data.labels:
            sizes[lab] = sizes.get(lab, 0) + 1
        keep = [i for i, lab in enumerate(data.labels) if sizes[lab] >= min_per_label]
        count(data.dropped, f"label with fewer than {min_per_label} rows", len(data.labels) - len(keep))
        data.texts = [data.texts[i] for i in keep]
        data.labels = [data.labels[i] for i in keep]
    if not data.texts:
        raise InputError(f"{path}: no rows with text")
    return data


def split_train_test(data: LabelledData, test_size: float | int, seed: int = 42) -> LabelledData:
    """Fixed-seed stratified split of an unsplit corpus into a training pool and a test set."""
    from sklearn.model_selection import train_test_split

    train_t, test_t, train_l, test_l = train_test_split(data.texts, data.labels, test_size=test_size,
                                                        random_state=seed, stratify=data.labels)
    return LabelledData(test_t, test_l, train_t, train_l, data.dropped)
