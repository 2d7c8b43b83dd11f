"""Training step speed and memory: m3e vs a plain sentence-transformers MNRL loop, same model, data, threads.

    .venv/bin/python bench/train.py [--steps 5] [--threads 2]

Each configuration runs in its own process (peak memory = that process's max RSS; on GPU also the CUDA peak):
  m3e-32          m3e's InfoNCE step (temperature 0.05), batch 32 pairs
  st-mnrl-32      sentence-transformers MultipleNegativesRankingLoss (scale 20 = the same loss), batch 32
  m3e-cached-1024 m3e's cached (GradCache) step, batch 1024 pairs in mini-batches of 32
Pairs: STS-B train sentence pairs (../shared/data or $M3E_DATA_DIR), max length 64. Writes
bench/results/train.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def pairs(data_dir: Path, n: int) -> list[tuple[str, str]]:
    out, seen = [], set()
    for line in (data_dir / "STS-B" / "STS-B.train.data").read_text(encoding="utf-8").splitlines():
        a, b, _ = line.split("\t")
        if a in seen or b in seen or a == b:
            continue
        seen.update((a, b))
        out.append((a, b))
    return (out * (n // len(out) + 1))[:n]


def one(config: str, steps: int, threads: int, data_dir: Path, device: str) -> dict:
    import torch

    from m3e import load_model
    from m3e.data.records import Record
    from m3e.training import step as m3e_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = load_model("multilingual-e5-small-q4", device=device).model
    model.max_seq_length = 64
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batch = 1024 if config.endswith("1024") else 32
    data = pairs(data_dir, batch * (steps + 1))
    prepare = getattr(model, "preprocess", None) or model.tokenize
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def embed(texts):
        f = {k: v.to(device) if torch.is_tensor(v) else v for k, v in prepare(texts).items()}
        return model(f)["sentence_embedding"]

    if config.startswith("st-"):
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        loss_fn = MultipleNegativesRankingLoss(model, scale=20.0)

        def run(chunk):
            feats = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in prepare(list(c)).items()}
                     for c in zip(*chunk, strict=True)]
            loss = loss_fn(feats, None)
            loss.backward()
    else:
        kw = {"temperature": 0.05, "symmetric": False, "gather": False, "dims": None, "cosent_scale": 20.0}

        def run(chunk):
            b = m3e_step.layout([Record(a, p) for a, p in chunk], "pair", "query: ", "query: ")
            if config.startswith("m3e-cached"):
                m3e_step.cached_step(b, embed, lambda x: x.backward(), 32, **kw)
            else:
                m3e_step.plain_step(b, embed, lambda x: x.backward(), **kw)

    times = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for s in range(steps + 1):
        chunk = data[s * batch:(s + 1) * batch]
        t0 = time.perf_counter()
        run(chunk)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if s:  # the first step warms up
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"config": config, "batch": batch, "steps": steps, "seconds_per_step": sum(times) / len(times),
           "pairs_per_s": batch / (sum(times) / len(times)), "peak_rss_mb": rss / 1024,
           "rss_over_loaded_model_mb": (rss - base_rss) / 1024}
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--cached-steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=os.environ.get("M3E_DATA_DIR",
                                                          Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--output", default=Path(__file__).parent / "results" / "train.json")
    args = ap.parse_args()
    if args.only:  # child process
        steps = args.cached_steps if "cached" in args.only else args.steps
        print(json.dumps(one(args.only, steps, args.threads, Path(args.data_dir), args.device)))
        return
    results = []
    for config in ("m3e-32", "st-mnrl-32", "m3e-cached-1024"):
        r = subprocess.run([sys.executable, __file__, "--only", config, "--steps", str(args.steps),
                            "--cached-steps", str(args.cached_steps), "--threads", str(args.threads),
                            "--device", args.device, "--data-dir", str(args.data_dir)],
                           capture_output=True, text=True, check=True)
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    by = {r["config"]: r for r in results}
    lines = ["| config | batch | pairs/s | s/step | peak RSS MB | RSS over loaded model MB |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['config']} | {r['batch']} | {r['pairs_per_s']:.1f} | {r['seconds_per_step']:.2f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['rss_over_loaded_model_mb']:.0f} |")
    ratio = by["m3e-32"]["pairs_per_s"] / by["st-mnrl-32"]["pairs_per_s"]
    lines.append(f"\nm3e / sentence-transformers pairs/s at batch 32: **{ratio:.2f}x**; cached batch 1024 uses "
                 f"{by['m3e-cached-1024']['rss_over_loaded_model_mb']:.0f} MB over the loaded model vs "
                 f"{by['m3e-32']['rss_over_loaded_model_mb']:.0f} MB for batch 32 uncached")
    table = f"Train, {args.device}, {args.threads} threads\n\n" + "\n".join(lines)
    print(table)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    out.write_text(json.dumps({"threads": args.threads, "device": args.device, "results": results, "table": table},
                              indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
