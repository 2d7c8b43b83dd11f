"""Rerankers: m3e's torch and onnx-int8 paths against sentence-transformers' ``CrossEncoder.predict`` on the same
model, in one run on this machine, and the /v1/rerank route under load.

    .venv/bin/python bench/rerank.py [--model CROSS_ENCODER] [--threads 2] [--repeat 3] [--seconds 20]

Pairs: the 1,000 LCSTS test headlines of the built-in LCSTSReranking task, each with its 20 candidate texts
(about 100 characters each); the first --queries of them. Every engine runs the same pairs in this process with
the same threads, best of --repeat after a warm-up. m3e scores query by query (``Reranker.score``: token-budget
batches); sentence-transformers gets every pair of the same queries in one ``predict`` call (batch 32).
Serve: ``m3e serve --reranker`` (onnx-int8), requests of one query and 20 documents of about 200 characters at
concurrency 1 and 32 for --seconds each.

Without --model the bench builds the architecture of the planned m3e-reranker-small-zh: m3e-small-zh with a fresh
one-label head (speed only: its scores mean nothing, so the int8 rank guard is relaxed for it and its fidelity is
printed). Writes bench/results/rerank.json and rerank.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from common import DATA_DIR, RESULTS, write_results
from serve import free_port

BIN = Path(sys.executable).parent


def untrained_reranker(folder: Path) -> Path:
    from sentence_transformers import CrossEncoder

    from m3e.models.builtin import BUILTINS

    if not (folder / "config.json").is_file():
        ce = CrossEncoder(str(BUILTINS["m3e-small-zh"].ensure()), num_labels=1, device="cpu")
        ce.save(str(folder))
    return folder


def pairs(n_queries: int) -> list[tuple[str, list[str]]]:
    from m3e.evaluation.builtin import load_lcsts_reranking

    data = load_lcsts_reranking(Path(DATA_DIR))
    return list(zip(data.queries[:n_queries], data.candidates[:n_queries], strict=True))


def per_call(model: str, groups, threads: int, repeat: int) -> dict:
    from sentence_transformers import CrossEncoder

    from m3e import load_reranker

    torch_rr = load_reranker(model, threads=threads, device="cpu")
    int8 = load_reranker(model, threads=threads, backend="onnx-int8", log=print)
    ce = CrossEncoder(model, device="cpu")
    flat = [(q, d) for q, docs in groups for d in docs]
    engines = {
        "m3e torch": lambda: [torch_rr.score(q, docs) for q, docs in groups],
        "m3e onnx-int8": lambda: [int8.score(q, docs) for q, docs in groups],
        "sentence-transformers CrossEncoder.predict": lambda: ce.predict(flat, batch_size=32),
    }
    torch_rr.score(*groups[0])  # warm-up: one query each
    int8.score(*groups[0])
    ce.predict(flat[:20])
    times = {name: [] for name in engines}
    for _ in range(repeat):
        for name, fn in engines.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    best = {name: min(t) for name, t in times.items()}
    base = best["sentence-transformers CrossEncoder.predict"]
    return {"pairs": len(flat), "fidelity_int8": int8.fidelity,
            "engines": {name: {"seconds": round(s, 3), "pairs_per_s": round(len(flat) / s, 1),
                               "vs_st": round(base / s, 2)} for name, s in best.items()}}


async def load(url: str, groups, concurrency: int, seconds: float) -> dict:
    import httpx

    done, errors = 0, 0
    stop_at = time.perf_counter() + seconds

    async def worker(client, k: int) -> None:
        nonlocal done, errors
        i = k
        while time.perf_counter() < stop_at:
            q, docs = groups[i % len(groups)]
            i += concurrency
            body = {"query": q, "documents": [d + d for d in docs][:20], "top_n": 5}  # ~200 characters each
            r = await client.post(f"{url}/v1/rerank", json=body, timeout=300)
            if r.status_code == 200 and len(r.json()["results"]) == 5:
                done += 1
            else:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client, k) for k in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"requests": done, "errors": errors, "rps": round(done / wall, 2)}


def serve(model: str, groups, threads: int, seconds: float) -> dict:
    import subprocess

    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "M3E_THREADS": str(threads)}
    proc = subprocess.Popen([str(BIN / "m3e"), "serve", "--reranker", f"rr={model}", "--backend", "onnx-int8",
                             "--port", str(port), "--log-level", "warning"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()[-2000:])
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.3)
        return {f"concurrency {c}": asyncio.run(load(url, groups, c, seconds)) for c in (1, 32)}
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a cross-encoder folder (default: m3e-small-zh + an untrained head)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--output", default=str(RESULTS / "rerank.json"))
    args = ap.parse_args()
    model = args.model
    if model is None:
        model = str(untrained_reranker(RESULTS / ".m3e-small-zh-ce-untrained"))
        os.environ.setdefault("M3E_ONNX_MIN_RANK", "0")  # an untrained head: speed only
    groups = pairs(args.queries)
    result = {"model": args.model or "m3e-small-zh + untrained head", "threads": args.threads,
              "per_call": per_call(model, groups, args.threads, args.repeat),
              "serve_onnx_int8": serve(model, groups, args.threads, args.seconds)}
    rows = ["| engine | pairs/s | vs CrossEncoder.predict |", "|---|---|---|"]
    for name, e in result["per_call"]["engines"].items():
        rows.append(f"| {name} | {e['pairs_per_s']} | {e['vs_st']}x |")
    rows += ["", "| /v1/rerank (onnx-int8, 20 docs of ~200 chars) | requests/s | errors |", "|---|---|---|"]
    for name, s in result["serve_onnx_int8"].items():
        rows.append(f"| {name} | {s['rps']} | {s['errors']} |")
    rows.append(f"\nint8 fidelity vs torch fp32: {result['per_call']['fidelity_int8']}")
    table = "\n".join(rows)
    write_results(args.output, result, table)
    print(table)


if __name__ == "__main__":
    main()
