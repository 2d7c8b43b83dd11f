"""Encode throughput: m3e vs plain sentence-transformers on the same model, same threads, one run.

    .venv/bin/python bench/encode.py [--model multilingual-e5-small-q4] [--threads 2] [--repeat 3]

Texts: the distinct sentences of the STS-B test file (../shared/data or $M3E_DATA_DIR). Writes
bench/results/encode.json and prints a Markdown table with the ratio m3e / sentence-transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def sts_sentences(data_dir: Path) -> list[str]:
    lines = (data_dir / "STS-B" / "STS-B.test.data").read_text(encoding="utf-8").splitlines()
    return sorted({s for line in lines for s in line.split("\t")[:2]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    ap.add_argument("--data-dir", default=os.environ.get("M3E_DATA_DIR",
                                                          Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--output", default=Path(__file__).parent / "results" / "encode.json")
    args = ap.parse_args()

    import torch

    from m3e import load_model

    texts = sts_sentences(Path(args.data_dir))
    m3e = load_model(args.model, device="cpu", threads=args.threads)
    st = m3e.model  # the very same SentenceTransformer object: same weights, same threads
    n_tokens = sum(m3e.count_tokens(texts, prompt="query: "))

    def run_m3e():
        return m3e.encode(texts, prompt_name="query", batch_size=args.batch_size,
                          max_batch_tokens=args.max_batch_tokens, show_progress=False)

    def run_st():
        return st.encode(texts, prompt_name="query", batch_size=args.batch_size, normalize_embeddings=True)

    def one_latency(fn_name):
        sample = texts[:50]
        t = time.perf_counter()
        for s in sample:
            (m3e.encode([s], prompt_name="query") if fn_name == "m3e"
             else st.encode([s], prompt_name="query", normalize_embeddings=True))
        return (time.perf_counter() - t) / len(sample) * 1000

    run_m3e()
    run_st()  # warm-up both
    times: dict[str, list[float]] = {"m3e": [], "sentence-transformers": []}
    for _ in range(args.repeat):  # interleaved so drift affects both alike
        for name, fn in (("m3e", run_m3e), ("sentence-transformers", run_st)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    rows = []
    for name in times:
        best = min(times[name])
        rows.append({"engine": name, "seconds": round(best, 3), "sentences_per_s": round(len(texts) / best, 1),
                     "tokens_per_s": round(n_tokens / best, 1),
                     "batch1_ms": round(one_latency("m3e" if name == "m3e" else "st"), 1)})
    ratio = rows[0]["sentences_per_s"] / rows[1]["sentences_per_s"]
    result = {"model": m3e.name, "texts": len(texts), "tokens": n_tokens, "threads": args.threads,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "rows": rows, "ratio_m3e_over_st": round(ratio, 3)}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"| engine | sentences/s | tokens/s | batch-1 latency ms |  ({len(texts)} STS-B test sentences, "
          f"{n_tokens} tokens, {args.threads} threads)")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['sentences_per_s']} | {r['tokens_per_s']} | {r['batch1_ms']} |")
    print(f"ratio m3e / sentence-transformers: {ratio:.2f}x")


if __name__ == "__main__":
    main()
