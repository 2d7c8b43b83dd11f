"""Keep evaluation data out of training: every text of the evaluation tasks, and a filter for training sources.

A training record is dropped when its anchor or positive is an evaluation text up to whitespace, letter case and
punctuation at either end ("求这张图片的情侣头像" matches the test text "求这张图片的情侣头像。"); a hard negative
that is an evaluation text is removed from its record. Counts per source say what the filter did.
"""

from __future__ import annotations

from pathlib import Path

from m3e.data.records import Source

_EDGE = "。！？!?.…，,；;：:、~～ \t\n"


def norm(text: str) -> str:
    return " ".join(text.split()).casefold().strip(_EDGE)


def task_texts(data) -> list[str]:
    """Every text a task's data holds, whatever its type."""
    out: list[str] = []
    for attr in ("sentences1", "sentences2", "texts", "train_texts", "queries", "corpus"):
        out.extend(getattr(data, attr, None) or [])
    for cands in getattr(data, "candidates", None) or []:
        out.extend(cands)
    return out


def evaluation_texts(data_dir: Path, task_names: list[str] | None = None) -> tuple[set[str], dict[str, int]]:
    from m3e.evaluation.builtin import select_tasks

    texts: set[str] = set()
    sizes: dict[str, int] = {}
    for task in select_tasks(task_names):
        found = {norm(t) for t in task_texts(task.load(data_dir))}
        sizes[task.name] = len(found)
        texts |= found
    return texts, sizes


def filter_sources(sources: list[Source], texts: set[str]) -> dict[str, dict[str, int]]:
    report: dict[str, dict[str, int]] = {}
    for source in sources:
        kept, dropped, negs = [], 0, 0
        for r in source.records:
            if norm(r.anchor) in texts or norm(r.positive) in texts:
                dropped += 1
                continue
            clean = [n for n in r.negatives if norm(n) not in texts]
            negs += len(r.negatives) - len(clean)
            r.negatives = clean
            kept.append(r)
        source.records = kept
        if dropped:
            source.skipped["overlaps an evaluation text"] += dropped
        report[source.name] = {"kept": len(kept), "dropped_records": dropped, "removed_negatives": negs}
    return report
