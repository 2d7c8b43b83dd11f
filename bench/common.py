"""What every benchmark shares: where the evaluation data is, its sentences, and how results are written."""

from __future__ import annotations

import json
import os
from pathlib import Path

DATA_DIR = os.environ.get("M3E_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
RESULTS = Path(__file__).resolve().parent / "results"


def sts_sentences(data_dir: str | Path) -> list[str]:
    """The 2,456 distinct sentences of the STS-B test file, sorted."""
    lines = (Path(data_dir) / "STS-B" / "STS-B.test.data").read_text(encoding="utf-8").splitlines()
    return sorted({s for line in lines for s in line.split("\t")[:2]})


def write_results(output: str | Path, result: dict, table: str) -> None:
    """``output`` (.json) gets the numbers, the same name with .md the table that bench/run.py collects."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
