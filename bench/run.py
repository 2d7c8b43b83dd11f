"""The benchmark suite's one entry point: run the parts you name, then collect their tables in one file.

    .venv/bin/python bench/run.py                 # encode, serve, train, search (CPU; ~25 minutes on 2 cores)
    .venv/bin/python bench/run.py encode serve    # just those
    .venv/bin/python bench/run.py gpu             # the GPU part (needs CUDA; a few minutes)
    .venv/bin/python bench/run.py --summary-only  # rebuild SUMMARY.md from the results already there

Each part is its own script (bench/<part>.py, see its --help for options; pass them after `--`, e.g.
`bench/run.py encode -- --short 500`) writing bench/results/<part>.json and <part>.md; this file runs them in
turn, in separate processes so one part's threads and memory never colour another's, and writes
bench/results/SUMMARY.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PARTS = ("encode", "startup", "static", "rerank", "serve", "train", "search", "data", "bulk", "gpu")
DEFAULT = ("encode", "serve", "train", "search")


def summary() -> Path:
    blocks = ["# Benchmark results", "", "Made by `bench/run.py`; each section is the table its part wrote.", ""]
    for part in PARTS:
        md = RESULTS / f"{part}.md"
        if md.is_file():
            stamp = time.strftime("%Y-%m-%d", time.localtime(md.stat().st_mtime))
            blocks += [f"## {part} ({stamp})", "", md.read_text(encoding="utf-8").strip(), ""]
    out = RESULTS / "SUMMARY.md"
    out.write_text("\n".join(blocks), encoding="utf-8")
    return out


def main() -> None:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", help=f"any of {', '.join(PARTS)} (default: {' '.join(DEFAULT)})")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args(argv)
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    failed = []
    if not args.summary_only:
        for part in args.parts or DEFAULT:
            print(f"== {part}", flush=True)
            code = subprocess.call([sys.executable, str(HERE / f"{part}.py"), *extra])
            if code:
                failed.append(part)
    print(f"wrote {summary()}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
