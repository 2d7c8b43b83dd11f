"""Reading texts to embed: every problem names file and line; nothing is dropped silently."""

from __future__ import annotations

import json

import pytest

from m3e.data.texts import read_texts
from m3e.errors import InputError


def test_txt_lines(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("第一行\n第二行\n", encoding="utf-8")
    got = read_texts(f)
    assert got.texts == ["第一行", "第二行"] and got.lines == [1, 2]


def test_txt_blank_line_is_an_error_unless_skipped(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("a\n\nb\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a.txt:2: empty line"):
        read_texts(f)
    got = read_texts(f, skip_blank=True)
    assert got.texts == ["a", "b"] and got.lines == [1, 3] and got.skipped_blank == 1


def test_jsonl_errors_name_line(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "好"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"a.jsonl:2: invalid JSON"):
        read_texts(f)
    f.write_text('{"text": "好"}\n{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"a.jsonl:2: no field 'text' \(fields: body\)"):
        read_texts(f)
    f.write_text('{"text": 5}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"a.jsonl:1: field 'text' is int"):
        read_texts(f)
    f.write_text('{"body": "x", "id": 1}\n', encoding="utf-8")
    assert read_texts(f, column="body").texts == ["x"]


def test_csv_and_tsv(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text('id,text\n1,"你好,世界"\n2,再见\n', encoding="utf-8")
    got = read_texts(f)
    assert got.texts == ["你好,世界", "再见"] and got.lines == [2, 3]
    t = tmp_path / "a.tsv"
    t.write_text("text\tid\n你好\t1\n", encoding="utf-8")
    assert read_texts(t).texts == ["你好"]
    with pytest.raises(InputError, match=r"a.csv:1: no column 'body'"):
        read_texts(f, column="body")
    f.write_text("id,text\n1,a,extra\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a.csv:2: more fields than the header"):
        read_texts(f)


def test_gbk_reads_and_undecodable_and_missing_are_named(tmp_path):
    f = tmp_path / "gbk.txt"
    f.write_bytes("第一行\n第二行".encode("gbk"))
    assert read_texts(f).texts == ["第一行", "第二行"]
    f.write_bytes("第一行\n".encode() + "第二行".encode("gbk") + b"\n")
    with pytest.raises(InputError, match=r"gbk.txt:2: not valid UTF-8"):
        read_texts(f)
    with pytest.raises(InputError, match="no such file"):
        read_texts(tmp_path / "nope.txt")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk"])
@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".json", "array.json"])
def test_every_reader_reads_a_file_the_same(tmp_path, encoding, suffix):
    """One encoding rule and one meaning of .json (an array, or JSON lines): bulk encode's reader, the text
    reader, training's row reader, task files and the index build's document reader agree."""
    from m3e.data.records import file_rows
    from m3e.data.streams import Reader
    from m3e.evaluation.task_files import read_records
    from m3e.search.documents import SUFFIXES, ReadReport, iter_documents

    texts = ["第一行：深度学习", "second line, English", "混合 mixed 文本 😀"]
    f = tmp_path / f"corpus{suffix}"
    if suffix == ".txt":
        body = "\n".join(texts) + "\n"
    elif suffix in (".jsonl", ".json"):
        body = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    elif suffix == "array.json":
        body = json.dumps([{"text": t} for t in texts], ensure_ascii=False, indent=1)
    else:
        body = "text\n" + "".join(f'"{t}"\n' for t in texts)
    if encoding == "gbk":
        body = body.replace("😀", "")
        texts = [t.replace("😀", "") for t in texts]
    f.write_bytes(body.encode(encoding))
    assert [r.text for r in Reader().file_records(f)] == texts
    assert read_texts(f).texts == texts
    if suffix != ".txt":  # training and task files read row files only
        assert [row["text"] for _, row in file_rows(f)] == texts
        assert [row["text"] for _, row in read_records(f)] == texts
    if f.suffix in SUFFIXES:
        docs = [d.text for d in iter_documents([f], ReadReport())]
        assert docs == (["\n".join(texts) + "\n"] if suffix == ".txt" else texts)
