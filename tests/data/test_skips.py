"""The one skip report: counts per reason, first places, one wording for every capability."""

import json
import pickle
from collections import Counter

from m3e.data.skips import EXAMPLES, SkipReport


def test_counts_match_a_plain_counter_and_keep_the_first_places():
    report, naive = SkipReport(), Counter()
    events = [("empty text", f"a.txt:{i}") for i in range(9)] + [("bad JSON", "b.jsonl:2"), ("empty text", None)]
    for reason, where in events:
        report.add(reason, where)
        naive[reason] += 1
    report.add("over max_records", n=3)
    naive["over max_records"] += 3
    report.add("nothing", n=0)  # zero is not a reason to report
    assert report == naive and report.total() == naive.total()
    assert report.examples["empty text"] == [f"a.txt:{i}" for i in range(EXAMPLES)]
    assert report.lines() == ["skipped 1 rows: bad JSON (e.g. b.jsonl:2)",
                              "skipped 10 rows: empty text (e.g. a.txt:0, a.txt:1, a.txt:2, a.txt:3, a.txt:4)",
                              "skipped 3 rows: over max_records"]
    assert report.summary() == "10 empty text (first at a.txt:0), 3 over max_records, 1 bad JSON (first at b.jsonl:2)"
    assert SkipReport().summary() == "none" and not SkipReport()


def test_merge_json_and_pickle_keep_counts_and_places():
    a, b = SkipReport(), SkipReport()
    a.add("empty", "x:1")
    b.add("empty", "y:7", n=2)
    b.add("label -", "y:9")
    a.merge(b)
    assert a == {"empty": 3, "label -": 1} and a.examples["empty"] == ["x:1", "y:7"]
    pooled = SkipReport()
    pooled.merge(b, prefix="train pool: ")
    assert pooled == {"train pool: empty": 2, "train pool: label -": 1}
    assert json.loads(json.dumps(a)) == {"empty": 3, "label -": 1}  # result files store the counts
    back = pickle.loads(pickle.dumps(a))  # Ray workers send theirs back
    assert back == a and back.examples == a.examples and isinstance(back, SkipReport)
