"""One process, any corpus size: stream records, encode them a chunk at a time, write sharded parquet.

Memory holds one shard's ids, texts and vectors (``shard_size`` rows) and nothing that grows with the input.
Shards cover fixed runs of the input's records, so ``resume`` skips the finished ones and the output after a
kill and a resume equals an uninterrupted run's, row for row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m3e.bulk.shards import Manifest, shard_name, write_shard
from m3e.data.rows import walk_inputs
from m3e.data.skips import SkipReport
from m3e.data.streams import SUFFIXES, Reader
from m3e.utils.memory import HeapTrimmer


@dataclass
class EncodeOptions:
    column: str = "text"
    id_column: str | None = None
    fmt: str | None = None  # txt, jsonl, csv, tsv, parquet; default: by file suffix
    skip_bad: bool = False  # skip (and count) bad rows instead of stopping at the first
    prompt: str | None = None  # literal prompt; else prompt_name
    prompt_name: str | None = None
    batch_size: int = 64
    max_batch_tokens: int = 16384
    truncate: str = "truncate"
    normalize: bool = True
    dtype: str = "float32"  # of the embedding column: float32 or float16
    with_text: bool = True
    shard_size: int = 50_000
    chunk: int = 8192  # texts tokenized, length-sorted and embedded together
    max_texts: int | None = None


@dataclass
class EncodeSummary:
    output: Path
    texts: int = 0  # encoded in this run
    tokens: int | None = 0  # None: not counted (the Ray engine)
    truncated: int | None = 0
    seconds: float = 0.0
    shards: int = 0  # in the output, all runs
    resumed: int = 0  # rows an earlier run had finished
    skipped: dict[str, int] = field(default_factory=dict)
    skip_report: SkipReport | None = None


def job_description(embedder, files: list[Path], options: EncodeOptions) -> dict:
    """What must be the same for a resumed run to continue this one: the inputs by content (a file edited in place
    is new work even with the same size and time; one copied back with a new time is not), and by path too unless
    ids come from a column (the default id is FILE:LINE)."""
    from m3e.models.fingerprint import model_fingerprint
    from m3e.utils.paths import file_digest

    return {
        "inputs": [([] if options.id_column else [str(f)]) + [f.stat().st_size, file_digest(f)] for f in files],
        "model": embedder.name, "model_fingerprint": model_fingerprint(embedder), "dim": embedder.dim,
        "prompt": embedder.resolve_prompt(options.prompt, options.prompt_name),
        **{k: getattr(options, k) for k in ("column", "id_column", "fmt", "skip_bad", "batch_size", "max_batch_tokens",
                                            "truncate", "normalize", "dtype", "with_text", "shard_size", "chunk",
                                            "max_texts")},
    }


def encode_corpus(embedder, inputs: list, output: str | Path, options: EncodeOptions | None = None, *,
                  resume: bool = False, show_progress: bool = False) -> EncodeSummary:
    """Embed every text of ``inputs`` (files, folders, globs) into parquet shards in the folder ``output``."""
    options = options or EncodeOptions()
    output = Path(output)
    files = walk_inputs(inputs, SUFFIXES)
    manifest = Manifest.open(output, job_description(embedder, files, options), resume)
    summary = EncodeSummary(output, resumed=manifest.rows_done, shards=len(manifest.shards))
    if manifest.complete:
        summary.skipped = dict(manifest.skipped)
        return summary
    prompt = embedder.resolve_prompt(options.prompt, options.prompt_name)
    report = SkipReport()
    reader = Reader(options.column, options.id_column, options.fmt, options.skip_bad, report)
    start = time.perf_counter()
    progress = _progress(files, show_progress)

    shard_ids: list[str] = []
    shard_texts: list[str] = []
    shard_vecs: list[np.ndarray] = []
    shard_tokens = shard_truncated = 0
    pending: list = []  # records of the chunk being gathered
    trimmer = HeapTrimmer()  # RSS stays flat over millions of texts (utils/memory.py)
    seen = 0  # good records read, finished shards included

    def flush_chunk() -> None:
        nonlocal shard_tokens, shard_truncated
        if not pending:
            return
        texts = [r.text for r in pending]
        vecs = embedder.encode(texts, prompt=prompt, batch_size=options.batch_size,
                               max_batch_tokens=options.max_batch_tokens, truncate=options.truncate,
                               normalize=options.normalize, show_progress=False)
        stats = embedder.last_stats
        shard_ids.extend(r.id for r in pending)
        if options.with_text:
            shard_texts.extend(texts)
        shard_vecs.append(np.asarray(vecs, dtype=np.float32))
        shard_tokens += stats.tokens
        shard_truncated += len(stats.truncated)
        summary.texts += len(texts)
        summary.tokens += stats.tokens
        summary.truncated += len(stats.truncated)
        if progress is not None:
            progress.update(sum(r.nbytes for r in pending))
            wall = max(time.perf_counter() - start, 1e-9)
            progress.set_postfix(texts_s=f"{summary.texts / wall:.0f}", tokens_s=f"{summary.tokens / wall:.0f}")
        pending.clear()
        trimmer.maybe_trim()

    def flush_shard() -> None:
        nonlocal shard_tokens, shard_truncated
        flush_chunk()
        if not shard_ids:
            return
        index = len(manifest.shards)
        write_shard(output, index, shard_ids, shard_texts if options.with_text else None,
                    np.concatenate(shard_vecs), options.dtype)
        manifest.skipped = dict(report)
        manifest.add_shard(shard_name(index), len(shard_ids), shard_tokens, shard_truncated)
        shard_ids.clear()
        shard_texts.clear()
        shard_vecs.clear()
        shard_tokens = shard_truncated = 0

    try:
        for record in reader.records(files):
            if options.max_texts is not None and seen >= options.max_texts:
                break
            seen += 1
            if seen <= summary.resumed:  # finished by an earlier run
                if progress is not None:
                    progress.update(record.nbytes)
                continue
            pending.append(record)
            if len(pending) >= options.chunk or len(shard_ids) + len(pending) >= options.shard_size:
                flush_chunk()
            if len(shard_ids) >= options.shard_size:
                flush_shard()
        flush_shard()
    finally:
        if progress is not None:
            progress.close()
    manifest.skipped = dict(report)
    manifest.seconds += time.perf_counter() - start
    manifest.complete = True
    manifest.save()
    summary.seconds = time.perf_counter() - start
    summary.shards = len(manifest.shards)
    summary.skipped = dict(report)
    summary.skip_report = report
    return summary


def _progress(files: list[Path], show: bool):
    if not show:
        return None
    from m3e.utils.progress import progress

    return progress(sum(f.stat().st_size for f in files), unit="B", unit_scale=True, desc="encode")
