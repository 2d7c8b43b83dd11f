"""The one folder walk: bulk encode, training sources and index builds list the same folder the same way."""

from pathlib import Path

import pytest

from m3e.data.records import FILE_TYPES
from m3e.data.rows import ignored_line, walk_inputs
from m3e.data.streams import SUFFIXES
from m3e.errors import InputError


def _tree(root: Path) -> None:
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / ".cache").mkdir()
    for name in ("d/b.txt", "d/a.jsonl", "d/sub/c.csv", "d/.hidden.txt", "d/.cache/x.jsonl", "d/skip.bin",
                 "d/sub/notes.pdf", "e.txt"):
        row = "text,text_pos\nx,y\nz,w\n" if name.endswith(".csv") else '{"text": "x", "text_pos": "y"}\n'
        (root / name).write_text(row, encoding="utf-8")


def test_walk_inputs_files_folders_globs_in_order_without_repeats(tmp_path):
    _tree(tmp_path)
    ignored: list[Path] = []
    got = walk_inputs([tmp_path / "d", str(tmp_path / "*.txt"), tmp_path / "d" / "b.txt"], SUFFIXES, ignored)
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["d/a.jsonl", "d/b.txt", "d/sub/c.csv", "e.txt"]
    assert sorted(p.name for p in ignored) == ["notes.pdf", "skip.bin"]  # hidden names are neither kept nor listed
    line = ignored_line(ignored, SUFFIXES)
    assert line.startswith("ignored 2 file(s)") and ".bin: 1" in line and ".pdf: 1" in line
    explicit = walk_inputs([tmp_path / "d" / "skip.bin"], SUFFIXES)  # named explicitly: its reader decides
    assert explicit == [tmp_path / "d" / "skip.bin"]


@pytest.mark.parametrize("inputs, message", [
    (["*.nope"], "the pattern matches no file"),
    (["missing.txt"], "missing.txt: no such file or folder"),
    (["empty"], "empty: no .* files in this folder"),
])
def test_walk_inputs_errors_name_the_input(tmp_path, inputs, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.bin").write_bytes(b"\0")
    with pytest.raises(InputError, match=message):
        walk_inputs([str(tmp_path / i) for i in inputs], SUFFIXES)


def test_training_and_index_walk_folders_as_bulk_encode_does(tmp_path):
    """Nested folders are read and hidden ones skipped by every capability (training used to read one level)."""
    from m3e.data.prepared import prepare_sources
    from m3e.search.documents import ReadReport, iter_documents

    _tree(tmp_path)
    ignored: list[Path] = []
    sources = prepare_sources(tmp_path / "d", tmp_path / "cache", ignored=ignored)
    assert sorted(s.name for s in sources) == ["a", "c"]  # d/a.jsonl and d/sub/c.csv; .txt is no training type
    assert sorted(p.name for p in ignored) == ["b.txt", "notes.pdf", "skip.bin"]
    assert walk_inputs([tmp_path / "d"], FILE_TYPES) == [tmp_path / "d" / "a.jsonl", tmp_path / "d/sub/c.csv"]
    report = ReadReport()
    docs = list(iter_documents([tmp_path / "d"], report))
    assert sorted({Path(d.source).name for d in docs}) == ["a.jsonl", "b.txt", "c.csv"]  # c.csv: two rows
    shown = [Path(p).name for ps in report.skipped_files.examples.values() for p in ps]
    assert sorted(shown) == ["notes.pdf", "skip.bin"]
