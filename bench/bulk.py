"""Bulk encoding of a corpus: streaming `m3e encode` (parquet shards) vs plain in-memory `m3e encode`, and the
Ray Data engine, on the same lines; peak RSS over a 10M-line input.

    .venv/bin/python bench/bulk.py [--lines 1000000] [--big 10000000 --big-texts 2000000] [--backend onnx-int8]

Input: short Chinese lines (the STS-B test sentences, each with its line number so every line is distinct),
written to a txt file. Each run is its own process under GNU time (peak RSS of that process; for Ray, of the
driver plus its workers, sampled from /proc). Rows:
  streaming   m3e encode -i FILE -o DIR (shards of 50,000)             texts/s, peak RSS
  plain       m3e encode -i FILE -o FILE.npy (everything in memory)    texts/s, peak RSS
  ray         m3e encode --engine ray --num-workers 2 --threads 1      texts/s, peak RSS (all processes)
  streaming, 10M-line file, --max-texts BIG_TEXTS: peak RSS and RSS over time (flat = independent of the input)
Writes bench/results/bulk.json and bulk.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import DATA_DIR, RESULTS, sts_sentences, write_results

BIN = Path(sys.executable).parent


def write_lines(path: Path, n: int, data_dir: str) -> None:
    sentences = sts_sentences(data_dir)
    with open(path, "w", encoding="utf-8") as fh:
        for start in range(0, n, 100_000):
            end = min(n, start + 100_000)
            fh.write("".join(f"{sentences[i % len(sentences)]}（{i}）\n" for i in range(start, end)))


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants (Ray's workers), from /proc."""
    total, todo = 0, [pid]
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def run(cmd: list[str], texts: int, sample_tree: bool = False) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(2.0):
            samples.append((time.perf_counter() - start, tree_rss_mb(proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read()
    proc.wait()
    stop.set()
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]} failed:\n{err[-3000:]}")
    peak = int(err.rsplit("MAXRSS ", 1)[1].split()[0]) / 1024
    if sample_tree and samples:
        peak = max(peak, max(m for _, m in samples))
    return {"seconds": seconds, "texts_per_s": texts / seconds, "peak_rss_mb": peak, "rss_samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--big", type=int, default=10_000_000, help="lines of the big file (0: skip)")
    ap.add_argument("--big-texts", type=int, default=2_000_000, help="texts encoded from the big file")
    ap.add_argument("--backend", default="onnx-int8")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--skip", nargs="*", default=[], help="rows to skip: streaming plain ray big")
    ap.add_argument("--work", default="/tmp/m3e-bench-bulk")
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--output", default=RESULTS / "bulk.json")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    src = work / "lines.txt"
    write_lines(src, args.lines, args.data_dir)
    m3e = [str(BIN / "m3e"), "encode", "-i"]
    common = ["--backend", args.backend, "--threads", str(args.threads)]
    results = {}
    # The first use of a backend converts the model (onnx export, quantization): not part of any row.
    warm = work / "warm.txt"
    warm.write_text("预热\n", encoding="utf-8")
    run([*m3e, str(warm), "-o", str(work / "warm.npy"), *common], 1)
    if "streaming" not in args.skip:
        results["streaming"] = run([*m3e, str(src), "-o", str(work / "shards"), *common], args.lines)
        print("streaming", {k: v for k, v in results["streaming"].items() if k != "rss_samples"}, flush=True)
    if "plain" not in args.skip:
        results["plain"] = run([*m3e, str(src), "-o", str(work / "all.npy"), *common], args.lines)
        print("plain", {k: v for k, v in results["plain"].items() if k != "rss_samples"}, flush=True)
    if "ray" not in args.skip:
        results["ray"] = run([*m3e, str(src), "-o", str(work / "ray"), "--engine", "ray", "--num-workers", "2",
                              "--threads", "1", "--backend", args.backend], args.lines, sample_tree=True)
        print("ray", {k: v for k, v in results["ray"].items() if k != "rss_samples"}, flush=True)
    if args.big and "big" not in args.skip:
        big = work / "big.txt"
        write_lines(big, args.big, args.data_dir)
        results["big"] = run([*m3e, str(big), "-o", str(work / "big-shards"), "--max-texts", str(args.big_texts),
                              *common], args.big_texts)
        print("big", {k: v for k, v in results["big"].items() if k != "rss_samples"}, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    plain = results.get("plain", {}).get("texts_per_s")
    lines = ["| run | texts | texts/s | x plain m3e encode | peak RSS |", "|---|---|---|---|---|"]
    for name, label, n in (("streaming", "streaming to parquet shards", args.lines),
                           ("plain", "plain `m3e encode -o .npy` (in memory)", args.lines),
                           ("ray", "Ray Data, 2 workers x 1 thread (driver + workers)", args.lines),
                           ("big", f"streaming, first {args.big_texts:,} of a {args.big:,}-line file", args.big_texts)):
        if name in results:
            r = results[name]
            ratio = f"{r['texts_per_s'] / plain:.2f}x" if plain and name != "big" else ""
            lines.append(f"| {label} | {n:,} | {r['texts_per_s']:.0f} | {ratio} | {r['peak_rss_mb']:.0f} MB |")
    if "big" in results and results["big"]["rss_samples"]:
        # The first quarter is start-up (imports, model load, first shard): flatness is the second quarter
        # against the last one.
        s = results["big"]["rss_samples"]
        q = max(1, len(s) // 4)
        second, last = s[q:2 * q] or s[:q], s[-q:]
        lines.append("")
        lines.append(f"RSS over the {args.big_texts:,}-text run (sampled every 2 s): "
                     f"{sum(m for _, m in second) / len(second):.0f} MB (second quarter, mean) -> "
                     f"{sum(m for _, m in last) / len(last):.0f} MB (last quarter), "
                     f"max {max(m for _, m in s):.0f} MB.")
    table = (f"Bulk encode, multilingual-e5-small-q4@{args.backend}, {args.threads} threads, "
             f"{os.cpu_count()} CPUs\n\n" + "\n".join(lines))
    print(table)
    write_results(args.output, results, table)


if __name__ == "__main__":
    main()
