"""Record-type detection (aliases, extra columns, BGE groups), skip counts, every file type, batching."""

from __future__ import annotations

import json

import numpy as np
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
    with pytest.raises(InputError, match="no such file"):
        read_source(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="need at least two distinct scores"):
        read_source(jsonl(tmp_path / "s.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 1}]))


def _source(name, n, dup_every=0, weight=1.0):
    recs = []
    for i in range(n):
        anchor = f"{name}-shared" if dup_every and i % dup_every == 0 else f"{name}-q{i}"
        recs.append(Record(anchor, f"{name}-p{i}", [f"{name}-n{i % 5}"] if i % 2 else []))
    return Source(name, "triplet", recs, weight=weight)


def _texts(record):
    return [record.anchor, record.positive, *record.negatives]


def test_batches_are_single_source_without_duplicates_and_seeded():
    sources = [_source("a", 100, dup_every=7), _source("b", 41), _source("c", 30, weight=2.0)]
    plan = epoch_plan(sources, 8, seed=1, epoch=0)
    stats = plan.stats
    for s, rows in (plan[i] for i in range(len(plan))):
        assert len(rows) == 8
        texts = [t for r in sources[s].batch(rows) for t in _texts(r)]
        assert len(texts) == len(set(texts)), "a text twice in one batch"
    assert stats.batches["b"] * 8 + stats.left_over["b"] == 41  # every record is in a batch or reported left over
    b_rows = plan.rows[plan.source == 1].ravel()
    assert len(set(b_rows.tolist())) == len(b_rows)  # each record at most once per epoch
    assert stats.batches["c"] == 2 * 3  # weight 2: twice its batches
    assert set(plan.source.tolist()) == {0, 1, 2} and len(set(plan.source[:6].tolist())) > 1  # interleaved
    again = epoch_plan(sources, 8, seed=1, epoch=0)
    assert (again.rows == plan.rows).all() and (again.source == plan.source).all()
    other = epoch_plan(sources, 8, seed=1, epoch=1)  # another shuffle (and, with repeats, maybe another count)
    assert other.rows.shape != plan.rows.shape or not (other.rows == plan.rows).all()


def test_duplicates_wait_for_a_later_batch_instead_of_being_lost():
    recs = [Record("same", f"p{i}") for i in range(4)] + [Record(f"q{i}", f"x{i}") for i in range(12)]
    src = Source("s", "pair", recs)
    batches, deferred, left = source_batches(src.hashes(), 4, np.random.default_rng(0))
    used = batches.ravel().tolist()
    assert len(set(used)) == len(used)
    assert sum(1 for i in used if recs[i].anchor == "same") == 4 and deferred > 0 and left == 0


def naive_plan(hashes, batch_size, order):
    """The rule as written in words, one record at a time: a record whose text is in the batch being filled
    waits; each new batch first takes the waiting records that fit, then the next records of the order."""
    batches, current, seen, waiting = [], [], set(), []
    queue = list(order)
    while True:
        if not current and waiting:
            still = []
            for k in waiting:
                texts = {int(t) for t in hashes[k] if t}
                if len(current) < batch_size and seen.isdisjoint(texts):
                    current.append(k)
                    seen |= texts
                else:
                    still.append(k)
            waiting = still
            if len(current) == batch_size:
                batches.append(current)
                current, seen = [], set()
                continue
        if not queue:
            return batches
        k = queue.pop(0)
        texts = {int(t) for t in hashes[k] if t}
        if seen.isdisjoint(texts):
            current.append(k)
            seen |= texts
            if len(current) == batch_size:
                batches.append(current)
                current, seen = [], set()
        else:
            waiting.append(k)


@pytest.mark.parametrize("seed", range(4))
def test_array_plan_equals_the_record_by_record_rule(seed):
    """The fast path (whole clean runs of records at once) gives exactly the batches of the one-by-one rule."""
    rng = np.random.default_rng(seed)
    texts = [f"t{int(x)}" for x in rng.integers(0, 300, size=400)]  # many repeats
    recs = [Record(texts[i], f"p{i}", [texts[(i * 7) % 400]] if i % 3 == 0 else []) for i in range(400)]
    src = Source("s", "triplet", recs)
    got, _, _ = source_batches(src.hashes(), 8, np.random.default_rng(seed))
    order = np.random.default_rng(seed).permutation(400)
    assert got.tolist() == naive_plan(src.hashes(), 8, order)


def _aligned(tmp_path, zh_rows, en_rows, header=True):
    zh, en = tmp_path / "train-zh.csv", tmp_path / "train-en.csv"
    head = "sentence1,sentence2,score\n" if header else ""
    zh.write_text(head + "".join(f"{a},{b},{s}\n" for a, b, s in zh_rows), encoding="utf-8")
    en.write_text(head + "".join(f"{a},{b},{s}\n" for a, b, s in en_rows), encoding="utf-8")
    return zh, en


def test_parallel_files_pair_row_i_with_row_i(tmp_path):
    """Two row-aligned files (a table and its translation) -> one pair per row and entry of `pairs`, equal to a
    naive zip of the two files; the cached (Arrow) reader gives the same records as the in-memory one."""
    from m3e.data.prepared import prepare_source

    zh_rows = [(f"中文句子{i}", f"另一个中文句子{i}", i % 5) for i in range(12)]
    en_rows = [(f"english sentence {i}", f"another english sentence {i}", i % 5) for i in range(12)]
    zh, en = _aligned(tmp_path, zh_rows, en_rows)
    spec = {"path": str(en), "pairs": {"sentence1": "sentence1", "sentence2": "sentence2"}}
    source = read_source(zh, parallel=spec)
    naive = [(z[c], e[c]) for z, e in zip(zh_rows, en_rows, strict=True) for c in (0, 1)]
    assert source.kind == "pair" and [(r.anchor, r.positive) for r in source.records] == naive
    cached = prepare_source(zh, tmp_path / "cache", parallel=spec).to_memory()
    assert [(r.anchor, r.positive) for r in cached.records] == naive
    # the translation is part of the cache key: editing it is never served from the old entry
    en.write_text(en.read_text(encoding="utf-8").replace("english sentence 3,", "an English sentence 3,"),
                  encoding="utf-8")
    again = prepare_source(zh, tmp_path / "cache", parallel=spec).to_memory()
    assert ("中文句子3", "an English sentence 3") in [(r.anchor, r.positive) for r in again.records]
    # one direction only, and headerless files with the source's columns
    (tmp_path / "x").mkdir()
    zh2, en2 = _aligned(tmp_path / "x", zh_rows, en_rows, header=False)
    one = read_source(zh2, format="csv", columns=["sentence1", "sentence2", "score"],
                      parallel={"path": str(en2), "pairs": {"sentence2": "sentence2"}})
    assert [(r.anchor, r.positive) for r in one.records] == [(z[1], e[1]) for z, e in zip(zh_rows, en_rows,
                                                                                        strict=True)]


def test_parallel_files_refuse_misalignment_and_count_bad_rows(tmp_path):
    zh_rows = [(f"句子{i}", f"句{i}", 1) for i in range(5)]
    en_rows = [(f"sentence {i}", f"s {i}", 1) for i in range(6)]
    zh, en = _aligned(tmp_path, zh_rows, en_rows)
    with pytest.raises(InputError, match=r"train-zh.csv: 5 rows, but its parallel file .*train-en.csv has 6"):
        read_source(zh, parallel={"path": str(en), "pairs": {"sentence1": "sentence1"}})
    with pytest.raises(InputError, match=r"train-en.csv: 6 rows, but its parallel file .*train-zh.csv has 5"):
        read_source(en, parallel={"path": str(zh), "pairs": {"sentence1": "sentence1"}})  # the longer one first
    with pytest.raises(InputError, match=r"train-en.csv: parallel pairs name column\(s\) \['text'\]"):
        read_source(zh, parallel={"path": str(en), "pairs": {"sentence1": "text"}})
    with pytest.raises(InputError, match="parallel takes a mapping with 'path'"):
        read_source(zh, parallel={"path": str(en)})
    en.write_text("sentence1,sentence2,score\n" + "".join(f"sentence {i},s {i},1\n" for i in range(4))
                  + "bad,row,with,extra,fields\n", encoding="utf-8")
    source = read_source(zh, parallel={"path": str(en), "pairs": {"sentence1": "sentence1"}})
    assert len(source) == 4 and sum(source.skipped.values()) == 1 and "malformed" in source.skipped.summary()
