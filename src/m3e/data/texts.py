"""Read the texts of one file into memory (``m3e encode`` to .npy, ``m3e mine``, distractor files).

A thin layer over the streaming :class:`m3e.data.streams.Reader`, so both name every problem by file and line
the same way; a blank entry is an error unless the caller asks to skip blanks, and then it is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from m3e.data.streams import Reader


@dataclass
class TextFile:
    texts: list[str]
    lines: list[int]  # 1-based source line of each text
    skipped_blank: int = 0


def read_texts(path: str | Path, column: str = "text", fmt: str | None = None,
               skip_blank: bool = False) -> TextFile:
    reader = Reader(column=column, fmt=fmt, skip_empty=skip_blank)
    out = TextFile([], [])
    for record in reader.file_records(Path(path)):
        out.texts.append(record.text)
        out.lines.append(record.line)
    out.skipped_blank = reader.report.total()
    return out
