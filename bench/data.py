"""Training data at M3E scale: prepare, time to the first step, memory, and the data path's records/s.

    .venv/bin/python bench/data.py [--pairs 22000000 5000000] [--work /tmp/m3e-bench-data]

For each size: writes a jsonl of that many short Chinese query/positive pairs (LCQMC and STS-B sentences with a
number, so every pair is distinct; ~145 bytes a pair), then, each in its own process so peak RSS is the process's:
  prepare    `m3e data prepare FILE -o CACHE` (the Arrow cache): seconds and peak RSS
  finetune   `m3e finetune --data CACHE --lora --max-steps 20 --batch-size 32` on the built-in model: seconds from
             the command's start to its first optimizer step (read from its progress line) and peak RSS
  data path  the epoch plan of all pairs (seconds), then batches fetched from the memory map and tokenized
             (records/s), in-process, no model
The file and caches are deleted afterwards. Writes bench/results/data.json and data.md.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import DATA_DIR, RESULTS, write_results

BIN = Path(sys.executable).parent


def generate(path: Path, n: int, data_dir: str) -> float:
    import orjson

    lines = (Path(data_dir) / "LCQMC" / "LCQMC.valid.data").read_text(encoding="utf-8").splitlines() + \
        (Path(data_dir) / "STS-B" / "STS-B.train.data").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("\t")[:2] for line in lines]
    random.Random(0).shuffle(pairs)
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        buf = []
        for i in range(n):
            a, b = pairs[i % len(pairs)]
            buf.append(orjson.dumps({"query": f"{a}（{i}）", "positive": f"{b}（第{i}条）"}))
            if len(buf) == 100_000:
                fh.write(b"\n".join(buf) + b"\n")
                buf = []
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    return time.perf_counter() - t0


def timed(cmd: list[str], first_step: bool = False) -> dict:
    """Run ``cmd`` under GNU time; seconds, peak RSS, and (``first_step``) when its progress showed step 1."""
    start = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = None
    tail = b""
    while True:
        chunk = proc.stderr.read1(65536) if hasattr(proc.stderr, "read1") else proc.stderr.read(4096)
        if not chunk:
            break
        tail = (tail + chunk)[-20000:]
        if first_step and first is None and re.search(rb"train:[^\r\n]*\| *1/\d+ ", tail):  # step 1 done
            first = time.perf_counter() - start
    proc.wait()
    text = tail.decode("utf-8", "replace")
    if proc.returncode:
        raise RuntimeError(f"{cmd[:3]} failed:\n{text[-3000:]}")
    rss = int(text.rsplit("MAXRSS ", 1)[1].split()[0]) / 1024
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": rss, "first_step_s": first}


def data_path(cache: Path, batches: int = 2000) -> dict:
    """Plan all records, then fetch + tokenize ``batches`` batches of 32 (this process; no model)."""
    from transformers import AutoTokenizer

    from m3e.data.batching import epoch_plan
    from m3e.data.prepared import open_prepared
    from m3e.models.builtin import BUILTINS

    sources = open_prepared(cache)
    t0 = time.perf_counter()
    plan = epoch_plan(sources, 32, 42, 0)
    plan_s = time.perf_counter() - t0
    tok = AutoTokenizer.from_pretrained(str(BUILTINS["multilingual-e5-small-q4"].folder))
    t0 = time.perf_counter()
    n = 0
    for i in range(min(batches, len(plan))):
        s, rows = plan[i]
        records = sources[s].batch(rows)
        tok([f"query: {r.anchor}" for r in records] + [f"query: {r.positive}" for r in records], truncation=True,
            max_length=512)
        n += len(records)
    return {"plan_s": plan_s, "batches": len(plan), "records_per_s": n / (time.perf_counter() - t0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, nargs="+", default=[22_000_000, 5_000_000])
    ap.add_argument("--work", default="/tmp/m3e-bench-data")
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--output", default=RESULTS / "data.json")
    args = ap.parse_args()
    work = Path(args.work)
    rows = []
    for n in args.pairs:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        src, cache = work / f"pairs-{n}.jsonl", work / "cache"
        gen_s = generate(src, n, args.data_dir)
        size_gb = src.stat().st_size / 1e9
        print(f"{n:,} pairs: {size_gb:.2f} GB written in {gen_s:.0f}s", flush=True)
        prep = timed([str(BIN / "m3e"), "data", "prepare", str(src), "-o", str(cache)])
        print(f"  prepare: {prep['seconds']:.0f}s, peak RSS {prep['peak_rss_mb']:.0f} MB", flush=True)
        fine = timed([str(BIN / "m3e"), "finetune", "--data", str(cache), "-o", str(work / "out"), "--lora",
                      "--max-steps", "20", "--batch-size", "32", "--device", "cpu"], first_step=True)
        print(f"  finetune: first step after {fine['first_step_s']:.0f}s, peak RSS {fine['peak_rss_mb']:.0f} MB, "
              f"{fine['seconds']:.0f}s in all", flush=True)
        path = data_path(cache)
        print(f"  data path: plan {path['plan_s']:.1f}s for {path['batches']:,} batches, "
              f"{path['records_per_s']:,.0f} records/s fetched + tokenized", flush=True)
        rows.append({"pairs": n, "jsonl_gb": size_gb, "prepare": prep, "finetune": fine, "data_path": path})
        shutil.rmtree(work, ignore_errors=True)
    lines = ["| pairs | jsonl | prepare | prepare peak RSS | first step after | finetune peak RSS | plan | "
             "records/s (fetch + tokenize) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['pairs']:,} | {r['jsonl_gb']:.1f} GB | {r['prepare']['seconds']:.0f} s | "
                     f"{r['prepare']['peak_rss_mb'] / 1024:.2f} GB | {r['finetune']['first_step_s']:.0f} s | "
                     f"{r['finetune']['peak_rss_mb'] / 1024:.2f} GB | {r['data_path']['plan_s']:.1f} s | "
                     f"{r['data_path']['records_per_s']:,.0f} |")
    table = (f"Training data at scale, {os.cpu_count()} CPUs: `m3e data prepare`, then `m3e finetune --lora "
             "--max-steps 20` on the built-in model\n\n" + "\n".join(lines))
    print(table)
    write_results(args.output, {"rows": rows}, table)


if __name__ == "__main__":
    main()
