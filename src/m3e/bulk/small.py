"""Small jobs held in memory: texts or a few files -> a .npy array, a .jsonl file or JSON lines on stdout
(corpora of any size go to parquet shards: :mod:`m3e.bulk.job`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from m3e.data.rows import walk_inputs
from m3e.data.streams import SUFFIXES, Reader
from m3e.errors import InputError
from m3e.utils.atomic import atomic_path


def encode_small(embedder, texts, inputs, output: Path | None, options, skip_blank: bool, log=print,
                 echo=print) -> None:
    """Embed texts given as arguments, or the files ``inputs`` held in memory, to JSON lines (``echo``), a .npy
    or a .jsonl file; truncated texts are named by file:line."""

    where: list[str] | None = None
    lines: list[int] | None = None
    if inputs:
        reader = Reader(options.column, options.id_column, skip_bad=options.skip_bad, skip_empty=skip_blank)
        records = list(reader.records(walk_inputs(inputs, SUFFIXES)))
        if options.max_texts:
            records = records[:options.max_texts]
        for line in reader.report.lines():
            log(line)
        if not records:
            raise InputError(f"{', '.join(inputs)}: no texts to embed")
        items = [r.text for r in records]
        where, lines = [r.where for r in records], [r.line for r in records]
    else:
        items = list(texts or [])
    vectors = embedder.encode(items, prompt=options.prompt, prompt_name=options.prompt_name,
                              batch_size=options.batch_size, max_batch_tokens=options.max_batch_tokens,
                              truncate=options.truncate, normalize=options.normalize)
    stats = embedder.last_stats
    name = (lambda i: where[i]) if where else (lambda i: f"text {i}")
    if stats.truncated:
        shown = ", ".join(name(i) for i in stats.truncated[:5])
        more = "" if len(stats.truncated) <= 5 else f" and {len(stats.truncated) - 5} more"
        log(f"truncated {len(stats.truncated)} of {len(items)} texts at {embedder.max_length} tokens "
             f"({shown}{more}); use --truncate window to keep all of them")

    def rows():
        for i, (text, vec) in enumerate(zip(items, vectors, strict=True)):
            row = {"index": i, "text": text, "embedding": [round(float(x), 7) for x in vec]}
            if lines:
                row["line"] = lines[i]
            yield json.dumps(row, ensure_ascii=False)

    if output is None:
        for row in rows():
            echo(row)
    elif output.suffix.lower() == ".npy":
        with atomic_path(output) as tmp, open(tmp, "wb") as fh:
            np.save(fh, vectors.astype(np.float32))
    else:
        with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for row in rows():
                fh.write(row + "\n")
    log(f"encoded {len(items)} texts with {embedder.name} (dim {embedder.dim}, {stats.tokens} tokens, "
         f"{stats.seconds:.2f}s)" + (f" -> {output}" if output else ""))
