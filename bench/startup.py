"""Start-up time and memory of what a user runs once per command: `m3e encode` of one sentence and `m3e serve` up
to its first answer, with the torch backend and the ONNX backends (which, once exported, load without torch or
sentence-transformers). Each command runs in a fresh process, backends interleaved, best of ``--repeats``.

    .venv/bin/python bench/startup.py [--model m3e-small-zh] [--repeats 3]

Wall time is process start to exit (encode) or to the first 200 of /v1/embeddings (serve); memory is the peak
resident set (encode: the child's rusage; serve: VmHWM after the first answer). The ONNX export is made once
before timing (it is cached in $M3E_HOME/onnx). Writes bench/results/startup.json and startup.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import RESULTS, write_results

M3E = str(Path(sys.executable).with_name("m3e"))
TEXT = "今天天气很好，我们去公园散步吧。"


def run_encode(model: str, backend: str, out: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([M3E, "encode", TEXT, "--model", model, "--backend", backend, "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"m3e encode --backend {backend} failed: {proc.stderr.read().decode()[-2000:]}")
    return {"seconds": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_serve(model: str, backend: str) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    body = json.dumps({"model": model, "input": [TEXT]}).encode()
    start = time.perf_counter()
    proc = subprocess.Popen([M3E, "serve", "--model", model, "--backend", backend, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = start + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"m3e serve --backend {backend} exited with {proc.returncode}")
            try:
                req = urllib.request.Request(f"{url}/v1/embeddings", body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as r:
                    if r.status == 200:
                        break
            except OSError:  # not listening yet, or 503 while the model loads
                if time.perf_counter() > deadline:
                    raise SystemExit(f"m3e serve --backend {backend} was not ready in 300 s") from None
                time.sleep(0.05)
        wall = time.perf_counter() - start
        status = Path(f"/proc/{proc.pid}/status").read_text()
        hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
        return {"seconds": round(wall, 3), "peak_rss_mb": round(hwm / 1024, 1)}
    finally:
        proc.terminate()
        proc.wait(30)


def markdown(result: dict) -> str:
    rows = [f"Start-up, {result['model']}, best of {result['repeats']}, {result['machine']}", "",
            "| command | backend | seconds | x faster than torch | peak RSS MB | x less memory |",
            "|---|---|---|---|---|---|"]
    for command in ("encode", "serve"):
        base = result[command]["torch"]
        for backend, r in result[command].items():
            rows.append(f"| m3e {command} | {backend} | {r['seconds']:.2f} | {base['seconds'] / r['seconds']:.1f}x | "
                        f"{r['peak_rss_mb']:.0f} | {base['peak_rss_mb'] / r['peak_rss_mb']:.1f}x |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="m3e-small-zh")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", type=Path, default=RESULTS / "startup.json")
    args = ap.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "m3e-startup-bench"
    tmp.mkdir(exist_ok=True)
    backends = ("torch", "onnx", "onnx-int8")
    for backend in backends[1:]:  # export once, outside the timing
        run_encode(args.model, backend, tmp / "v.npy")
    result = {"model": args.model, "repeats": args.repeats,
              "machine": f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}"}
    for command, fn in (("encode", lambda b: run_encode(args.model, b, tmp / "v.npy")),
                        ("serve", lambda b: run_serve(args.model, b))):
        runs: dict[str, list[dict]] = {b: [] for b in backends}
        for _ in range(args.repeats):
            for b in backends:
                runs[b].append(fn(b))
        result[command] = {b: {"seconds": min(r["seconds"] for r in rs),
                               "peak_rss_mb": min(r["peak_rss_mb"] for r in rs)} for b, rs in runs.items()}
    shutil.rmtree(tmp, ignore_errors=True)
    write_results(args.output, result, markdown(result))


if __name__ == "__main__":
    main()
