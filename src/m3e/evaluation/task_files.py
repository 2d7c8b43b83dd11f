"""Tasks from a user's own file (``m3e eval --task-file``): jsonl, csv or tsv, the type read from the fields.

Formats (one record a line / row; see docs/evaluation.md):

- STS: ``sentence1, sentence2, score`` (any numeric scale)
- PairClassification: ``sentence1, sentence2, label`` (0/1)
- Classification: ``text, label[, split]`` (split train/test; without it a fixed-seed stratified 50/50 split)
- Clustering: ``text, cluster`` (or ``text, label`` with ``--task-type Clustering``)
- Retrieval: ``query, pos[, neg]`` (pos/neg: a string or a list; rows with the same query merge); rows with only
  ``doc`` add distractor passages to the corpus
- Reranking: ``query, pos, neg`` with negatives on every query (each query ranks its own candidates)
- BitextMining: ``source, target`` (or ``sentence1, sentence2`` without a label)
"""

from __future__ import annotations

import json
from pathlib import Path

from m3e.errors import InputError
from m3e.evaluation.data import (
    BitextData,
    LabelledData,
    PairData,
    RerankingData,
    RetrievalData,
    count,
    csv_rows,
    jsonl_rows,
    split_train_test,
)
from m3e.evaluation.tasks import MAIN_SCORES, TASK_TYPES, Task

CATEGORY = {"STS": "s2s", "PairClassification": "s2s", "Classification": "s2s", "Clustering": "s2s",
            "Retrieval": "s2p", "Reranking": "s2p", "BitextMining": "bitext"}


def read_records(path: Path) -> list[tuple[int, dict]]:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"task file {path} does not exist")
    if suffix in (".jsonl", ".json"):
        return list(jsonl_rows(path))
    if suffix in (".csv", ".tsv"):
        return list(csv_rows(path, delimiter="\t" if suffix == ".tsv" else ","))
    raise InputError(f"{path}: unsupported task file type '{suffix}'; use .jsonl, .csv or .tsv")


def detect_type(path: Path, records: list[tuple[int, dict]]) -> str:
    keys = set(records[0][1])
    if {"sentence1", "sentence2", "score"} <= keys:
        return "STS"
    if {"sentence1", "sentence2", "label"} <= keys:
        return "PairClassification"
    if {"source", "target"} <= keys or {"sentence1", "sentence2"} <= keys:
        return "BitextMining"
    if {"query", "pos", "neg"} <= keys and all(row.get("neg") for _, row in records if row.get("query")):
        return "Reranking"  # every query has its own negatives to rank
    if {"query", "pos"} <= keys:
        return "Retrieval"
    if {"text", "cluster"} <= keys:
        return "Clustering"
    if {"text", "label"} <= keys:
        return "Classification"
    raise InputError(f"{path}: cannot tell the task type from fields {sorted(keys)}; see docs/evaluation.md for "
                     "the formats, or pass --task-type")


def _text(path: Path, no: int, row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        raise InputError(f"{path}:{no}: missing field '{key}'")
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path}:{no}: field '{key}' must be a non-empty string")
    return value


def _texts(path: Path, no: int, row: dict, key: str, required: bool) -> list[str]:
    value = row.get(key)
    if value in (None, "", []):
        if required:
            raise InputError(f"{path}:{no}: missing field '{key}'")
        return []
    if isinstance(value, str):
        if value.startswith("["):  # a JSON list inside a CSV cell
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = [value]
        else:
            value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(f"{path}:{no}: field '{key}' must be a non-empty string or a list of them")
    return value


def _number(path: Path, no: int, row: dict, key: str) -> float:
    try:
        return float(row[key])
    except (TypeError, ValueError):
        raise InputError(f"{path}:{no}: field '{key}' must be a number, found {row[key]!r}") from None


def load_records(path: Path, task_type: str, records: list[tuple[int, dict]]):
    if task_type in ("STS", "PairClassification"):
        data = PairData([], [], [])
        key = "score" if task_type == "STS" else "label"
        for no, row in records:
            data.sentences1.append(_text(path, no, row, "sentence1"))
            data.sentences2.append(_text(path, no, row, "sentence2"))
            value = _number(path, no, row, key)
            if task_type == "PairClassification" and value not in (0.0, 1.0):
                raise InputError(f"{path}:{no}: label must be 0 or 1, found {row[key]!r}")
            data.labels.append(value)
        return data
    if task_type == "BitextMining":
        a, b = ("source", "target") if "source" in records[0][1] else ("sentence1", "sentence2")
        data = BitextData([], [])
        for no, row in records:
            data.sentences1.append(_text(path, no, row, a))
            data.sentences2.append(_text(path, no, row, b))
        return data
    if task_type in ("Classification", "Clustering"):
        label_key = "cluster" if "cluster" in records[0][1] else "label"
        data = LabelledData([], [])
        train = LabelledData([], [])
        has_split = any("split" in row for _, row in records)
        for no, row in records:
            text = _text(path, no, row, "text")
            if row.get(label_key) in (None, ""):
                raise InputError(f"{path}:{no}: missing field '{label_key}'")
            label = str(row[label_key])
            split = str(row.get("split", "test")).lower()
            if task_type == "Classification" and has_split and split not in ("train", "test"):
                raise InputError(f"{path}:{no}: split must be 'train' or 'test', found {row.get('split')!r}")
            target = train if task_type == "Classification" and split == "train" else data
            target.texts.append(text)
            target.labels.append(label)
        if task_type == "Classification":
            if has_split:
                data.train_texts, data.train_labels = train.texts, train.labels
            else:
                data = split_train_test(data, 0.5)
        return data
    if task_type == "Retrieval":
        data = RetrievalData([], [], [], [])
        doc_id: dict[str, str] = {}
        by_query: dict[str, dict[str, int]] = {}

        def add(text: str) -> str:
            if text not in doc_id:
                doc_id[text] = f"d{len(doc_id)}"
                data.corpus.append(text)
                data.doc_ids.append(doc_id[text])
            return doc_id[text]

        for no, row in records:
            if not row.get("query") and row.get("doc"):
                add(_text(path, no, row, "doc"))
                continue
            query = _text(path, no, row, "query")
            rel = by_query.setdefault(query, {})
            for pos in _texts(path, no, row, "pos", required=True):
                rel[add(pos)] = 1
            for neg in _texts(path, no, row, "neg", required=False):
                add(neg)
        data.queries = list(by_query)
        data.qrels = list(by_query.values())
        return data
    if task_type == "Reranking":
        groups: dict[str, tuple[list[str], list[str]]] = {}
        for no, row in records:
            pos, neg = groups.setdefault(_text(path, no, row, "query"), ([], []))
            pos += _texts(path, no, row, "pos", required=True)
            neg += _texts(path, no, row, "neg", required=True)
        data = RerankingData([], [], [])
        for query, (pos, neg) in groups.items():
            cands = list(dict.fromkeys(pos + neg))
            if len(cands) < len(pos) + len(neg):
                count(data.dropped, "duplicate candidate", len(pos) + len(neg) - len(cands))
            positives = set(pos)
            data.queries.append(query)
            data.candidates.append(cands)
            data.relevance.append([1 if c in positives else 0 for c in cands])
        return data
    raise InputError(f"unknown task type '{task_type}'")  # pragma: no cover


def task_from_file(path: Path, task_type: str | None = None, name: str | None = None) -> Task:
    """A Task over ``path``; the file is read once now so format errors surface before any model loads."""
    records = read_records(path)
    if not records:
        raise InputError(f"{path}: no records")
    if task_type:
        lookup = {t.lower(): t for t in TASK_TYPES}
        if task_type.lower() not in lookup:
            raise InputError(f"unknown task type '{task_type}'; use one of {', '.join(TASK_TYPES)}")
        task_type = lookup[task_type.lower()]
    else:
        task_type = detect_type(path, records)
    data = load_records(path, task_type, records)
    return Task(name or path.stem, task_type, CATEGORY[task_type], f"{task_type} task from {path.name}",
                MAIN_SCORES[task_type], lambda root: data)
