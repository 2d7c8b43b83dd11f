"""m3e-static-zh against the transformer it is distilled from, in one run on this machine.

    .venv/bin/python bench/static.py [--threads 2] [--repeat 3] [--bulk-lines 1000000] [--skip bulk serve index]

Per call: the 2,456 distinct STS-B test sentences, every engine in this process with the same threads,
interleaved, best of --repeat after a warm-up: m3e-static-zh through m3e (``load_model(...).encode``), the same
folder in model2vec's ``StaticModel`` and in plain sentence-transformers, and m3e-small-zh on onnx-int8, torch
and plain sentence-transformers. Ratios are against m3e-small-zh onnx-int8 (the fastest transformer path).
Bulk: ``m3e encode -i LINES -o shards/`` end to end (process start to exit, under GNU time: peak RSS) with
m3e-static-zh on --bulk-lines lines and with m3e-small-zh onnx-int8 on --bulk-transformer lines.
Index: ``m3e index build`` of the 26,751 MedicalQTR titles with each model (seconds).
Serve: peak RSS (VmHWM) of ``m3e serve`` with each model after 500 requests of 32 sentences.
Writes bench/results/static.json and static.md.
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
from pathlib import Path

from common import DATA_DIR, RESULTS, sts_sentences, write_results

BIN = Path(sys.executable).parent
STATIC, TEACHER = "m3e-static-zh", "m3e-small-zh"


def per_call(sentences: list[str], threads: int, repeat: int) -> list[dict]:
    from model2vec import StaticModel
    from sentence_transformers import SentenceTransformer

    from m3e import load_model
    from m3e.models.builtin import BUILTINS

    static = load_model(STATIC, threads=threads)
    folder = str(BUILTINS[STATIC].folder)
    m2v = StaticModel.from_pretrained(folder)
    st_static = SentenceTransformer(folder, device="cpu")
    int8 = load_model(TEACHER, threads=threads, backend="onnx-int8")
    torch_model = load_model(TEACHER, threads=threads)
    st = torch_model.model
    engines = {
        f"{STATIC} (m3e)": lambda x: static.encode(x, show_progress=False),
        f"{STATIC} (model2vec StaticModel)": lambda x: m2v.encode(x, use_multiprocessing=False),
        f"{STATIC} (sentence-transformers)": lambda x: st_static.encode(x, batch_size=1024),
        f"{TEACHER} onnx-int8 (m3e)": lambda x: int8.encode(x, prompt_name="query", show_progress=False),
        f"{TEACHER} torch (m3e)": lambda x: torch_model.encode(x, prompt_name="query", show_progress=False),
        f"{TEACHER} (sentence-transformers)": lambda x: st.encode(x, prompt_name="query", batch_size=64,
                                                                  normalize_embeddings=True),
    }
    for fn in engines.values():
        fn(sentences[:64])
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeat):
        for name, fn in engines.items():
            t = time.perf_counter()
            fn(sentences)
            times[name].append(time.perf_counter() - t)
            print(f"{name:42} {times[name][-1]:8.3f} s", file=sys.stderr, flush=True)
    rows = []
    for name, fn in engines.items():
        t = time.perf_counter()
        for s in sentences[:200]:
            fn([s])
        rows.append({"engine": name, "seconds": min(times[name]), "texts_per_s": len(sentences) / min(times[name]),
                     "batch1_ms": (time.perf_counter() - t) / 200 * 1000})
    base = next(r for r in rows if "onnx-int8" in r["engine"])["texts_per_s"]
    for r in rows:
        r["x_vs_onnx_int8"] = r["texts_per_s"] / base
    return rows


def timed(cmd: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{cmd[:5]} failed:\n{proc.stderr[-3000:]}")
    return {"seconds": seconds, "peak_rss_mb": int(proc.stderr.rsplit("MAXRSS ", 1)[1].split()[0]) / 1024}


def write_lines(path: Path, n: int, sentences: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for start in range(0, n, 100_000):
            end = min(n, start + 100_000)
            fh.write("".join(f"{sentences[i % len(sentences)]}（{i}）\n" for i in range(start, end)))


def bulk(work: Path, sentences: list[str], threads: int, lines: int, transformer_lines: int) -> list[dict]:
    src = work / "lines.txt"
    write_lines(src, lines, sentences)
    rows = []
    for model, backend, n in ((STATIC, "torch", lines), (TEACHER, "onnx-int8", transformer_lines)):
        cmd = [str(BIN / "m3e"), "encode", "-i", str(src), "-o", str(work / f"shards-{model}"), "--model", model,
               "--backend", backend, "--threads", str(threads), "--max-texts", str(n)]
        got = timed(cmd)
        rows.append({"model": model, "backend": backend, "texts": n, **got, "texts_per_s": n / got["seconds"]})
        print("bulk", rows[-1], file=sys.stderr, flush=True)
    return rows


def index_build(work: Path, data_dir: Path, threads: int) -> list[dict]:
    titles = [json.loads(line)["text"] if line.startswith("{") else line.split("\t")[-1]
              for line in _medical_titles(data_dir)]
    docs = work / "titles.jsonl"
    docs.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in titles), encoding="utf-8")
    rows = []
    for model, backend in ((STATIC, "torch"), (TEACHER, "onnx-int8"), (TEACHER, "torch")):
        out = work / f"index-{model}-{backend}"
        got = timed([str(BIN / "m3e"), "index", "build", "-i", str(docs), "-o", str(out), "--model", model,
                     "--backend", backend, "--threads", str(threads)])
        rows.append({"model": model, "backend": backend, "documents": len(titles), **got})
        print("index", rows[-1], file=sys.stderr, flush=True)
    return rows


def _medical_titles(data_dir: Path) -> list[str]:
    from m3e.evaluation.builtin import BUILTIN_TASKS

    data = BUILTIN_TASKS["MedicalQTRRetrieval"].load(data_dir)
    return [json.dumps({"text": t}, ensure_ascii=False) for t in data.corpus]


def serve_rss(sentences: list[str], threads: int, requests: int = 500) -> list[dict]:
    import httpx

    rows = []
    for model, backend in ((STATIC, "torch"), (TEACHER, "onnx-int8")):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([str(BIN / "m3e"), "serve", "--model", model, "--backend", backend, "--port",
                                 str(port), "--threads", str(threads)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 300
            while time.time() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            t = time.perf_counter()
            with httpx.Client(timeout=120) as client:
                for i in range(requests):
                    batch = [sentences[(i * 32 + j) % len(sentences)] for j in range(32)]
                    client.post(f"{url}/v1/embeddings", json={"model": model, "input": batch}).raise_for_status()
            seconds = time.perf_counter() - t
            status = Path(f"/proc/{proc.pid}/status").read_text()
            hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
            rows.append({"model": model, "backend": backend, "requests": requests, "texts_per_s":
                         requests * 32 / seconds, "peak_rss_mb": hwm})
            print("serve", rows[-1], file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bulk-lines", type=int, default=1_000_000)
    ap.add_argument("--bulk-transformer", type=int, default=50_000)
    ap.add_argument("--skip", nargs="*", default=[], help="parts to skip: bulk index serve")
    ap.add_argument("--work", default="/tmp/m3e-bench-static")
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--output", default=RESULTS / "static.json")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sentences = sts_sentences(args.data_dir)
    result = {"threads": args.threads, "cpus": os.cpu_count(), "per_call": per_call(sentences, args.threads,
                                                                                      args.repeat)}
    if "bulk" not in args.skip:
        result["bulk"] = bulk(work, sentences, args.threads, args.bulk_lines, args.bulk_transformer)
    if "index" not in args.skip:
        result["index"] = index_build(work, Path(args.data_dir), args.threads)
    if "serve" not in args.skip:
        result["serve"] = serve_rss(sentences, args.threads)
    shutil.rmtree(work, ignore_errors=True)
    write_results(args.output, result, markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = [f"m3e-static-zh vs m3e-small-zh, {r['threads']} threads, {r['cpus']} CPUs", "",
             "Per call, 2,456 STS-B test sentences (best of the runs, interleaved):", "",
             "| engine | texts/s | batch-1 ms | x vs m3e-small-zh onnx-int8 |", "|---|---|---|---|"]
    lines += [f"| {x['engine']} | {x['texts_per_s']:,.0f} | {x['batch1_ms']:.2f} | {x['x_vs_onnx_int8']:.1f}x |"
              for x in r["per_call"]]
    if r.get("bulk"):
        lines += ["", "Bulk `m3e encode -i LINES.txt -o shards/`, process start to exit:", "",
                  "| model | texts | texts/s | peak RSS |", "|---|---|---|---|"]
        lines += [f"| {x['model']} ({x['backend']}) | {x['texts']:,} | {x['texts_per_s']:,.0f} | "
                  f"{x['peak_rss_mb']:,.0f} MB |" for x in r["bulk"]]
    if r.get("index"):
        lines += ["", "`m3e index build` of the 26,751 MedicalQTR titles:", "",
                  "| model | seconds | peak RSS |", "|---|---|---|"]
        lines += [f"| {x['model']} ({x['backend']}) | {x['seconds']:.1f} | {x['peak_rss_mb']:,.0f} MB |"
                  for x in r["index"]]
    if r.get("serve"):
        lines += ["", "`m3e serve`, 500 sequential requests of 32 sentences:", "",
                  "| model | texts/s | peak RSS |", "|---|---|---|"]
        lines += [f"| {x['model']} ({x['backend']}) | {x['texts_per_s']:,.0f} | {x['peak_rss_mb']:,.0f} MB |"
                  for x in r["serve"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
