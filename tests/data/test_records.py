"""Record-type detection (aliases, extra columns, BGE groups), skip counts, every file type, batching."""

from __future__ import annotations

import json
import random

import pytest

from m3e.data.batching import epoch_plan, source_batches
from m3e.data.records import Record, Source, read_source, read_sources, source_from_dataset
from m3e.errors import InputError


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(("row", "kind"), [
    ({"text": "a", "text_pos": "b"}, "pair"),
    ({"query": "a", "positive": "b", "extra": 1, "source": "x"}, "pair"),  # extra columns are ignored
    ({"anchor": "a", "positive": "b", "negative": "c"}, "triplet"),
    ({"text": "a", "text_pos": "b", "text_neg": "c"}, "triplet"),
    ({"query": "a", "pos": ["b", "b2"], "neg": ["c", "d"]}, "triplet"),
    ({"sentence1": "a", "sentence2": "b", "label": 1}, "scored"),
    ({"sentence1": "a", "sentence2": "b", "score": 0.3}, "scored"),
    ({"sentence1": "a", "sentence2": "b"}, "pair"),
])
def test_detection(tmp_path, row, kind):
    other = {k: (v + "2" if isinstance(v, str) else [x + "2" for x in v] if isinstance(v, list) else 0)
             for k, v in row.items()}
    src = read_source(jsonl(tmp_path / "s.jsonl", [row, other]))
    assert src.kind == kind and len(src.records) >= 2


def test_bge_groups_expand_and_skips_are_counted(tmp_path):
    rows = [
        {"query": "q1", "pos": ["p1", "p2"], "neg": ["n1", "", "n1"]},
        {"query": "", "pos": ["p"], "neg": []},
        {"query": "q3", "pos": [], "neg": ["n"]},
        {"query": "q4", "pos": ["q4"], "neg": ["n"]},
        {"pos": ["p"], "neg": ["n"]},
        {"query": "q6", "pos": "p6", "neg": "n6"},
    ]
    src = read_source(jsonl(tmp_path / "bge.jsonl", rows))
    assert [(r.anchor, r.positive, r.negatives) for r in src.records] == [
        ("q1", "p1", ["n1"]), ("q1", "p2", ["n1"]), ("q6", "p6", ["n6"])]
    assert src.skipped == {"empty or non-text anchor": 1, "empty positive": 1, "positive equals anchor": 1,
                           "missing field": 1, "empty negative (negative dropped, row kept)": 1,
                           "negative equal to the anchor, the positive or another negative (negative dropped)": 2}
    assert "first at row 2" in src.report()


def test_file_types_and_folders(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "data"
    folder.mkdir()
    jsonl(folder / "a.jsonl", [{"text": "一", "text_pos": "二"}])
    (folder / "b.csv").write_text("query,positive,negative\n问,答,错\n", encoding="utf-8")
    (folder / "c.tsv").write_text("sentence1\tsentence2\tlabel\n甲\t乙\t1\n丙\t丁\t0\n", encoding="utf-8")
    (folder / "d.json").write_text(json.dumps([{"anchor": "x", "positive": "y"}]), encoding="utf-8")
    pq.write_table(pa.table({"query": ["q"], "pos": [["p"]], "neg": [["n1", "n2"]]}), folder / "e.parquet")
    (folder / "notes.md").write_text("ignored")
    sources = read_sources(folder)
    assert [(s.name, s.kind, len(s.records)) for s in sources] == [
        ("a", "pair", 1), ("b", "triplet", 1), ("c", "scored", 2), ("d", "pair", 1), ("e", "triplet", 1)]
    assert sources[4].records[0].negatives == ["n1", "n2"]


def test_hf_dataset_source():
    from datasets import Dataset

    ds = Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"], "id": [1, 2]})
    src = source_from_dataset(ds, name="hf", weight=2.0)
    assert src.kind == "pair" and len(src.records) == 2 and src.weight == 2.0


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="cannot tell the record type from columns"):
        read_source(jsonl(tmp_path / "x.jsonl", [{"foo": "a", "bar": "b"}]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "text_pos": "b"}\n{oops\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: invalid JSON"):
        read_source(bad)
    with pytest.raises(InputError, match="file not found"):
        read_source(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="need at least two distinct scores"):
        read_source(jsonl(tmp_path / "s.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 1}]))


def _source(name, n, dup_every=0, weight=1.0):
    recs = []
    for i in range(n):
        anchor = f"{name}-shared" if dup_every and i % dup_every == 0 else f"{name}-q{i}"
        recs.append(Record(anchor, f"{name}-p{i}", [f"{name}-n{i % 5}"] if i % 2 else []))
    return Source(name, "triplet", recs, weight=weight)


def test_batches_are_single_source_without_duplicates_and_seeded():
    sources = [_source("a", 100, dup_every=7), _source("b", 41), _source("c", 30, weight=2.0)]
    plan, stats = epoch_plan(sources, 8, seed=1, epoch=0)
    for s, rows in plan:
        assert len(rows) == 8
        texts = [t for i in rows for t in (sources[s].records[i].anchor, sources[s].records[i].positive,
                                           *sources[s].records[i].negatives)]
        assert len(texts) == len(set(texts)), "a text twice in one batch"
    assert stats.batches["b"] * 8 + stats.left_over["b"] == 41  # every record is in a batch or reported left over
    assert stats.batches["c"] == 2 * 3  # weight 2: twice its batches
    assert {s for s, _ in plan} == {0, 1, 2} and len({s for s, _ in plan[:6]}) > 1  # interleaved
    again, _ = epoch_plan(sources, 8, seed=1, epoch=0)
    assert again == plan
    other, _ = epoch_plan(sources, 8, seed=1, epoch=1)
    assert other != plan


def test_duplicates_wait_for_a_later_batch_instead_of_being_lost():
    recs = [Record("same", f"p{i}") for i in range(4)] + [Record(f"q{i}", f"x{i}") for i in range(12)]
    batches, deferred, left = source_batches(recs, 4, random.Random(0))
    used = [i for b in batches for i in b]
    assert len(set(used)) == len(used)
    assert sum(1 for i in used if recs[i].anchor == "same") == 4 and deferred > 0 and left == 0
