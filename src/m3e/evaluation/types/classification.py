"""Classification: a logistic-regression probe on undersampled training rows, averaged over experiments (MTEB).

Also home of :class:`LabelledData` and its cleaning/splitting helpers, which clustering shares.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from m3e.data.skips import SkipReport
from m3e.errors import InputError
from m3e.evaluation.types.base import Encode, TaskRefused, TaskType, text_field


@dataclass
class LabelledData:
    """Classification (train pool + test) and clustering (``texts`` only): texts with a class label each."""

    texts: list[str]
    labels: list[str]
    train_texts: list[str] = field(default_factory=list)
    train_labels: list[str] = field(default_factory=list)
    dropped: SkipReport = field(default_factory=SkipReport)

    def __len__(self) -> int:
        return len(self.labels)


def clean_labelled(path: Path, rows: Iterable[tuple[int, str, str]], min_per_label: int = 1) -> LabelledData:
    """(line, text, label) rows -> LabelledData without empty or duplicate texts or too-rare labels (counted)."""
    data = LabelledData([], [])
    seen: set[str] = set()
    for _no, text, label in rows:
        if not text.strip():
            data.dropped.add("empty text")
            continue
        if text in seen:
            data.dropped.add("duplicate text")
            continue
        seen.add(text)
        data.texts.append(text)
        data.labels.append(str(label))
    if min_per_label > 1:
        sizes: dict[str, int] = {}
        for lab in data.labels:
            sizes[lab] = sizes.get(lab, 0) + 1
        keep = [i for i, lab in enumerate(data.labels) if sizes[lab] >= min_per_label]
        data.dropped.add(f"label with fewer than {min_per_label} rows", n=len(data.labels) - len(keep))
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


def undersample_indices(labels, samples_per_label: int, n_experiments: int, seed: int = 42) -> list[list[int]]:
    """Training rows of each experiment, as MTEB draws them.

    MTEB reshuffles one index list in place with a fresh ``RandomState(seed)`` per experiment (so experiment i
    sees the permutation applied i+1 times), then keeps the first ``samples_per_label`` rows of each label.
    """
    idxs = list(range(len(labels)))
    out = []
    for _ in range(n_experiments):
        np.random.RandomState(seed).shuffle(idxs)
        seen: dict = {}
        chosen = []
        for i in idxs:
            if seen.get(labels[i], 0) < samples_per_label:
                chosen.append(i)
                seen[labels[i]] = seen.get(labels[i], 0) + 1
        out.append(chosen)
    return out


def classification_scores(train_emb: np.ndarray, train_labels, test_emb: np.ndarray, test_labels, *,
                          samples_per_label: int = 32, n_experiments: int = 10, seed: int = 42,
                          max_iter: int = 100) -> dict[str, float]:
    """Linear probe: LogisticRegression on undersampled train rows, averaged over experiments."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    names = {v: i for i, v in enumerate(sorted(set(train_labels) | set(test_labels)))}  # order kept: same classes_
    train_labels = np.array([names[v] for v in train_labels])
    test_labels = np.array([names[v] for v in test_labels])
    binary = len(np.unique(test_labels)) == 2
    runs = []
    with warnings.catch_warnings():  # LR at max_iter=100 and classes never predicted warn every run, as in MTEB
        warnings.simplefilter("ignore")
        for chosen in undersample_indices(list(train_labels), samples_per_label, n_experiments, seed):
            clf = LogisticRegression(max_iter=max_iter, random_state=seed)
            clf.fit(train_emb[chosen], train_labels[chosen])
            pred = clf.predict(test_emb)
            run = {
                "accuracy": accuracy_score(test_labels, pred),
                "f1": f1_score(test_labels, pred, average="macro"),
                "f1_weighted": f1_score(test_labels, pred, average="weighted"),
                "precision": precision_score(test_labels, pred, average="macro"),
                "precision_weighted": precision_score(test_labels, pred, average="weighted"),
                "recall": recall_score(test_labels, pred, average="macro"),
                "recall_weighted": recall_score(test_labels, pred, average="weighted"),
            }
            if binary:  # MTEB scores AP on the hard predictions
                run["ap"] = average_precision_score(test_labels, pred, average="macro")
                run["ap_weighted"] = average_precision_score(test_labels, pred, average="weighted")
            runs.append(run)
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


def score(data: LabelledData, encode: Encode, params: dict) -> dict[str, float]:
    if not data.train_texts:
        raise TaskRefused("the training split is empty")
    if len(set(data.train_labels)) < 2:
        raise TaskRefused(f"needs at least two classes in the training split, found {sorted(set(data.train_labels))}")
    unseen = sorted(set(data.labels) - set(data.train_labels))
    if unseen:
        raise TaskRefused(f"test labels missing from the training split: {', '.join(unseen[:10])}")
    per_label = params.get("samples_per_label", 32)
    n_exp, seed = params.get("n_experiments", 10), params.get("seed", 42)
    chosen = undersample_indices(data.train_labels, per_label, n_exp, seed)
    union = sorted(set().union(*chosen))  # only rows some experiment trains on are encoded, as in MTEB
    union_emb = encode([data.train_texts[j] for j in union], "text")
    train_emb = np.zeros((len(data.train_texts), union_emb.shape[1]), dtype=np.float32)
    train_emb[union] = union_emb
    test_emb = encode(data.texts, "text")
    return classification_scores(train_emb, data.train_labels, test_emb, data.labels, samples_per_label=per_label,
                                 n_experiments=n_exp, seed=seed)


def labelled_from_records(path: Path, records, label_key: str, with_split: bool) -> LabelledData:
    data, train = LabelledData([], []), LabelledData([], [])
    has_split = with_split and any("split" in row for _, row in records)
    for no, row in records:
        text = text_field(path, no, row, "text")
        if row.get(label_key) in (None, ""):
            raise InputError(f"{path}:{no}: missing field '{label_key}'")
        split = str(row.get("split", "test")).lower() if has_split else "test"
        if split not in ("train", "test"):
            raise InputError(f"{path}:{no}: split must be 'train' or 'test', found {row.get('split')!r}")
        target = train if split == "train" else data
        target.texts.append(text)
        target.labels.append(str(row[label_key]))
    if not with_split:
        return data
    if has_split:
        data.train_texts, data.train_labels = train.texts, train.labels
        return data
    return split_train_test(data, 0.5)


TYPE = TaskType(
    name="Classification", main_score="accuracy", prompts={"text": "query"}, category="s2s", score=score,
    fields="text, label[, split]",
    detect=lambda keys, records: {"text", "label"} <= keys,
    from_records=lambda path, records: labelled_from_records(path, records, "label", with_split=True),
)
