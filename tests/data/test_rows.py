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


def _bad_file(tmp_path: Path, suffix: str) -> Path:
    """A UTF-8 file with one problem of each kind the reader reports, between good rows (its first line is UTF-8
    Chinese that is not GB18030, so the encoding rule reads it as UTF-8)."""
    gbk = "坏行".encode("gbk")
    if suffix == ".jsonl":
        body = ('{"text": "第一行"}\n'.encode() + b'\n{"text": "' + gbk + b'"}\n{"text": \n[1, 2]\n{"text": "two"}\n')
    else:
        body = ('text,id\n第一行,1\n'.encode() + b'\n"' + gbk + b'",2\n"multi\nline",3\nx,4,extra\nlast\n')
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("suffix, problems, good", [
    (".jsonl", [(2, "empty line"), (3, "not valid UTF-8"), (4, "invalid JSON"), (5, "not a JSON object")],
     [(1, "第一行"), (6, "two")]),
    (".csv", [(3, "empty line"), (4, "not valid UTF-8"), (7, "more fields than the header has"),
              (8, "fewer fields than the header has")], [(2, "第一行"), (5, "multi\nline")]),
])
def test_scan_rows_reports_each_problem_at_its_line_and_readers_apply_their_policy(tmp_path, suffix, problems,
                                                                                   good):
    from m3e.data.rows import iter_rows, scan_rows
    from m3e.data.skips import SkipReport
    from m3e.data.streams import Reader

    path = _bad_file(tmp_path, suffix)
    rows = list(scan_rows(path))
    assert [(r.no, r.problem) for r in rows if r.problem] == problems
    assert [(r.no, r.value["text"]) for r in rows if not r.problem] == good
    assert sum(r.nbytes for r in rows) == path.stat().st_size  # every byte is accounted for (progress)
    # bulk encode: stops at the first problem, or skips and counts every one with its place
    with pytest.raises(InputError, match=rf"bad{suffix}:{problems[0][0]}: {problems[0][1]}.*--skip-blank"):
        list(Reader().file_records(path))
    report = SkipReport()
    assert [r.text for r in Reader(skip_bad=True, report=report).file_records(path)] == [t for _, t in good]
    assert report.total() == len(problems)
    assert {reason: places[0] for reason, places in report.examples.items()} == {
        reason: f"{path}:{no}" for no, reason in problems}
    # training and task files: blank lines passed over, the next problem stops the read at its line
    with pytest.raises(InputError, match=rf"bad{suffix}:{problems[1][0]}: {problems[1][1]}"):
        list(iter_rows(path))


def test_index_build_skips_undecodable_rows_and_stops_at_broken_ones(tmp_path):
    from m3e.search.documents import ReadReport, iter_documents

    path = _bad_file(tmp_path, ".jsonl")
    report = ReadReport()
    with pytest.raises(InputError, match=r"bad.jsonl:4: invalid JSON"):
        for _ in iter_documents([path], report):
            pass
    assert report.skipped_rows.examples == {"not UTF-8 or GB18030 text": [f"{path}:3"]}


def test_scan_rows_equals_the_standard_library_on_well_formed_files(tmp_path):
    """Reference: csv.DictReader and json.loads on the whole text (U+2028 inside a text, CRLF, BOM, quotes)."""
    import csv
    import io
    import json

    from m3e.data.rows import scan_rows

    texts = ["普通", "has, comma", 'has "quotes"', "line\u2028sep", "tab\tinside", "中文 English 😀"]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps({"text": t, "n": i}, ensure_ascii=False) + "\r\n"
                                                for i, t in enumerate(texts)).encode())
    assert [r.value for r in scan_rows(jsonl)] == [json.loads(line) for line in
                                                    jsonl.read_bytes().decode("utf-8-sig").split("\r\n") if line]
    buf = io.StringIO()
    csv.writer(buf).writerows([["text", "n"], *[[t, str(i)] for i, t in enumerate(texts)]])
    (tmp_path / "a.csv").write_text(buf.getvalue(), encoding="gb18030")
    expected = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r.value for r in scan_rows(tmp_path / "a.csv")] == expected


def test_parquet_reads_only_the_fields_asked_for_and_names_a_missing_one(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from m3e.data.rows import scan_rows
    from m3e.data.streams import Reader

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "id": [7, 8], "blob": [b"x", b"y"]}), path)
    assert [r.value for r in scan_rows(path, fields=["text"])] == [{"text": "a"}, {"text": "b"}]
    assert [(r.id, r.text) for r in Reader(id_column="id").file_records(path)] == [("7", "a"), ("8", "b")]
    with pytest.raises(InputError, match=r"t.parquet: no column 'body' \(columns: text, id, blob\); choose one"):
        list(Reader(column="body").file_records(path))
