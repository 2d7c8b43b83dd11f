"""Streamed text readers: inputs as files, folders and globs; ids and lines; quoted CSV fields over lines."""

from __future__ import annotations

import json

import pytest

from m3e.data.streams import Reader
from m3e.errors import InputError


def test_csv_records_keep_their_first_line_and_ids(tmp_path):
    f = tmp_path / "t.csv"
    f.write_bytes('\ufeffid,text\n1,"多行\n文本"\n2,单行\n'.encode())
    records = list(Reader(id_column="id").file_records(f))
    assert [(r.id, r.text, r.line) for r in records] == [("1", "多行\n文本", 2), ("2", "单行", 4)]
    assert [r.where for r in records] == [f"{f}:2", f"{f}:4"]


def test_jsonl_ids_and_skips(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"text": "甲", "doc": "a"}, {"text": "乙"}, {"text": "丙", "doc": 7}]) + "\n", encoding="utf-8")
    reader = Reader(id_column="doc", skip_bad=True)
    assert [(r.id, r.text) for r in reader.records([f])] == [("a", "甲"), ("7", "丙")]
    assert reader.report == {"no id in field 'doc'": 1} and reader.report.examples["no id in field 'doc'"] == [
        f"{f}:2"]
    with pytest.raises(InputError, match=r"t.jsonl:2: no id in field 'doc'.*--skip-bad"):
        list(Reader(id_column="doc").records([f]))


def test_a_line_that_is_not_utf8_is_reported_once(tmp_path):
    f = tmp_path / "t.csv"
    f.write_bytes(b"text\n\xff\xfe\nok\n")
    reader = Reader(skip_bad=True)
    assert [r.text for r in reader.file_records(f)] == ["ok"]
    assert reader.report == {"not valid UTF-8": 1}
