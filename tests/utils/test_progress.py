"""Long jobs print progress lines when stderr is not a terminal (a log file)."""

from __future__ import annotations

import io

from m3e.utils.progress import LineProgress


def test_line_progress_prints_at_its_interval_and_at_the_end(monkeypatch):
    monkeypatch.setenv("M3E_PROGRESS_SECONDS", "0")
    out = io.StringIO()
    bar = LineProgress(2_000_000, "encode", "B", unit_scale=True, stream=out)
    bar.update(500_000)
    bar.set_postfix(texts_s="120")
    bar.update(500_000)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("encode: 500.0k/2.0M B (25.0%) after")
    assert "1.0M/2.0M B (50.0%)" in lines[1] and lines[1].endswith("texts_s=120")
    quiet = io.StringIO()
    monkeypatch.setenv("M3E_PROGRESS_SECONDS", "3600")
    bar = LineProgress(None, "index", "chunks", stream=quiet)
    for _ in range(100):
        bar.update(8)
    assert quiet.getvalue() == ""
    bar.close()
    assert quiet.getvalue().startswith("index: 800 chunks after")
