"""The GPU part of the suite: bf16 encode throughput by batch size against what the GPU's peak allows.

    python bench/gpu.py [--model multilingual-e5-small-q4] [--batch-sizes 32 64 128 256 512] [--seconds 5]
                        [--compile] [--peak-tflops 989]

One prepared script, a few minutes on one GPU. For each batch size it encodes STS-B test sentences (query
prompt, length-sorted, bf16 autocast, SDPA attention) for --seconds and reports tokens/s and sentences/s;
model FLOPs per token = 2 x non-embedding parameters + 4 x layers x hidden x mean padded length (QK^T and AV),
so achieved TFLOP/s and the share of the bf16 dense peak follow. It also checks that bf16 vectors on the GPU
stay faithful to fp32 on CPU (mean / min cosine, 512 sentences). --compile adds a torch.compile row per batch
size. Runs on CPU too (--device cpu, for checking the script; no peak). Writes bench/results/gpu.json and .md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import DATA_DIR, sts_sentences, write_results

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets.
PEAKS = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0,
         "L40S": 362.0, "L4": 121.0, "A10": 125.0, "4090": 165.0, "V100": 125.0}


def flops_per_token(model, mean_len: float) -> float:
    hf = model.model[0].auto_model
    cfg = hf.config
    params = sum(p.numel() for n, p in hf.named_parameters() if "embeddings" not in n)
    return 2.0 * params + 4.0 * cfg.num_hidden_layers * cfg.hidden_size * mean_len


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the bf16 peak of this GPU")
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--output", default=Path(__file__).parent / "results" / "gpu.json")
    args = ap.parse_args()

    import numpy as np
    import torch

    from m3e import load_model

    texts = sts_sentences(args.data_dir)
    gpu = load_model(args.model, device=args.device, dtype="bfloat16")
    on_cuda = gpu.device.startswith("cuda")
    name = torch.cuda.get_device_name(0) if on_cuda else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAKS.items() if on_cuda and k in name), None)

    cpu = load_model(args.model, device="cpu")
    sample = texts[:512]
    cos = np.sum(gpu.encode(sample, prompt_name="query") * cpu.encode(sample, prompt_name="query"), axis=1)
    fidelity = {"mean_cosine": round(float(cos.mean()), 6), "min_cosine": round(float(cos.min()), 6)}
    print(f"{name}: bf16 on {gpu.device} vs fp32 on cpu: mean cosine {cos.mean():.6f}, min {cos.min():.6f}")

    units = gpu.prepare(texts, prompt_name="query").units
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    rows = []
    variants = [("eager", False)] + ([("compiled", True)] if args.compile else [])
    for label, compiled in variants:
        if compiled:
            gpu.model[0].auto_model = torch.compile(gpu.model[0].auto_model, dynamic=True)
        for bs in args.batch_sizes:
            gpu.embed_units(units[: bs * 2], batch_size=bs, max_batch_tokens=10**9)  # warm-up / compile
            sync()
            n_sent = n_tok = padded = 0
            start = time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                stats = type(gpu.last_stats)()
                gpu.embed_units(units, batch_size=bs, max_batch_tokens=10**9, stats=stats)
                sync()
                n_sent += len(units)
                n_tok += stats.tokens
                padded += sum(len(u) + 2 for u in units)
            wall = time.perf_counter() - start
            mean_len = padded / n_sent
            fpt = flops_per_token(gpu, mean_len)
            tflops = fpt * n_tok / wall / 1e12
            row = {"variant": label, "batch_size": bs, "tokens_per_s": round(n_tok / wall),
                   "sentences_per_s": round(n_sent / wall), "mean_tokens": round(mean_len, 1),
                   "gflop_per_token": round(fpt / 1e9, 4), "achieved_tflops": round(tflops, 2),
                   "share_of_peak": round(tflops / peak, 4) if peak else None}
            rows.append(row)
            print(row, flush=True)
    result = {"device": name, "model": gpu.name, "torch": torch.__version__, "bf16_peak_tflops": peak,
              "fidelity_bf16_vs_cpu_fp32": fidelity, "rows": rows}
    lines = [f"GPU encode, {gpu.name} on {name} (bf16 autocast, SDPA; peak {peak or '?'} TFLOP/s), torch "
             f"{torch.__version__}; bf16 vs CPU fp32 mean cosine {fidelity['mean_cosine']}, min "
             f"{fidelity['min_cosine']}", "",
             "| variant | batch | tokens/s | sentences/s | achieved TFLOP/s | share of bf16 peak |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        share = f"{100 * r['share_of_peak']:.2f} %" if r["share_of_peak"] is not None else "n/a"
        lines.append(f"| {r['variant']} | {r['batch_size']} | {r['tokens_per_s']:,} | {r['sentences_per_s']:,} | "
                     f"{r['achieved_tflops']} | {share} |")
    table = "\n".join(lines)
    print(table)
    write_results(args.output, result, table)


if __name__ == "__main__":
    main()
