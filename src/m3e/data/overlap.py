"""Keep evaluation data out of training: a filter that drops training records overlapping evaluation texts.

A training record is dropped when its anchor or positive is an evaluation text up to whitespace, letter case and
punctuation at either end ("求这张图片的情侣头像" matches the test text "求这张图片的情侣头像。"); a hard negative
that is an evaluation text is removed from its record. The comparison runs on 64-bit hashes of the normalized
texts (:mod:`m3e.data.texthash`), so it takes arrays, at any data size. Counts per source say what it did.

The caller supplies the evaluation texts (:func:`m3e.training.recipe.evaluation_texts` collects the built-in
tasks'), so the data layer does not depend on the evaluation package.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from m3e.data.texthash import hash_texts


def banned_hashes(texts: Iterable[str]) -> np.ndarray:
    return np.unique(hash_texts(texts))


def filter_sources(sources, texts: Iterable[str]) -> dict[str, dict[str, int]]:
    banned = texts if isinstance(texts, np.ndarray) else banned_hashes(texts)
    report: dict[str, dict[str, int]] = {}
    for source in sources:
        dropped, negs = source.drop_overlapping(banned)
        report[source.name] = {"kept": len(source), "dropped_records": dropped, "removed_negatives": negs}
    return report
