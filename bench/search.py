"""Search quality and speed of `m3e index`: recall@10 of the approximate (HNSW) index against exact search,
query latency at 10k and 100k chunks, and index build throughput.

    .venv/bin/python bench/search.py [--sizes 10000 100000] [--queries 200] [--build-docs 300] [--backend torch]

Data (../shared/data or $M3E_DATA_DIR): CMRC2018 dev paragraphs and CSL abstracts, the two s2p corpora.
Embedding 100k real chunks takes hours on 2 cores, so large corpora are synthesized the way the issue asks,
by repeating and shuffling the passages: every passage is split into sentences (embedded once, passage
prompt), and each synthetic chunk is 2-4 consecutive sentences of a passage whose sentence order was shuffled,
its vector the normalized mean of those sentence vectors. Queries are real CMRC2018 questions (query prompt).
Build throughput is measured for real on the first --build-docs CMRC paragraphs (read, chunk, embed, store).
Writes bench/results/search.json and search.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATA_DIR, write_results


def passages(data_dir: Path) -> tuple[list[str], list[str]]:
    from m3e.evaluation.builtin import BUILTIN_TASKS

    cmrc = BUILTIN_TASKS["CMRC2018Retrieval"].load(data_dir)
    csl = BUILTIN_TASKS["CSLRetrieval"].load(data_dir)
    return cmrc.corpus + csl.corpus, cmrc.queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--build-docs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--output", default=Path(__file__).parent / "results" / "search.json")
    args = ap.parse_args()

    from m3e import load_model
    from m3e.search import Index
    from m3e.search.chunking import sentence_spans
    from m3e.search.documents import Document

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    model = load_model(args.model, device="cpu", threads=args.threads, backend=args.backend, log=log)
    texts, questions = passages(Path(args.data_dir))
    rng = random.Random(args.seed)
    result = {"model": model.label, "threads": args.threads, "passages": len(texts), "sizes": {}}

    # 1. Real build throughput on CMRC paragraphs.
    docs = [Document(f"/cmrc/{i}", t, str(i)) for i, t in enumerate(texts[: args.build_docs])]
    with tempfile.TemporaryDirectory() as tmp:
        index = Index.create(Path(tmp) / "ix", model)
        t = time.perf_counter()
        change = index.add(docs)
        index.save()
        wall = time.perf_counter() - t
    result["build"] = {"documents": len(docs), "chunks": change.chunks, "seconds": round(wall, 2),
                       "chunks_per_s": round(change.chunks / wall, 1),
                       "chars_per_s": round(sum(len(d.text) for d in docs) / wall)}
    log(f"build: {result['build']}")

    # 2. Sentence vectors, then synthetic chunks.
    per_passage = [[p[s:e].strip() for s, e in sentence_spans(p) if p[s:e].strip()] for p in texts]
    unique = sorted({s for ps in per_passage for s in ps})
    t = time.perf_counter()
    vec_of = dict(zip(unique, model.encode(unique, prompt_name="passage" if "passage" in model.prompts else None,
                                           show_progress=True), strict=True))
    log(f"embedded {len(unique)} sentences in {time.perf_counter() - t:.0f}s")
    qv = model.encode(rng.sample(questions, args.queries), prompt_name="query" if "query" in model.prompts else None)

    sample = rng.sample(questions, 50)
    t = time.perf_counter()
    for q in sample:
        model.encode([q], prompt_name="query" if "query" in model.prompts else None)
    result["embed_query_ms"] = round((time.perf_counter() - t) / len(sample) * 1000, 2)

    def synth(n: int) -> np.ndarray:
        out = np.empty((n, model.dim), dtype=np.float32)
        for i in range(n):
            sents = per_passage[rng.randrange(len(per_passage))][:]
            rng.shuffle(sents)
            width = min(len(sents), rng.randint(2, 4))
            start = rng.randrange(len(sents) - width + 1)
            v = np.mean([vec_of[s] for s in sents[start:start + width]], axis=0)
            out[i] = v / np.linalg.norm(v)
        return out

    for size in args.sizes:
        vecs = synth(size)
        index = Index.create(Path(tempfile.mkdtemp()) / "ix", model, exact_below=size + 1)
        t = time.perf_counter()
        index._vectors.add(np.arange(1, size + 1, dtype=np.uint64), vecs)
        insert = time.perf_counter() - t
        timings = {}
        found = {}
        for mode, exact in (("exact", True), ("approximate", False)):
            index.dense(qv[:5], 10, exact=exact)  # warm
            t = time.perf_counter()
            found[mode] = [index.dense(qv[i:i + 1], 10, exact=exact)[0] for i in range(len(qv))]
            timings[mode] = (time.perf_counter() - t) / len(qv) * 1000
        # numpy brute force as the reference for "exact"
        ref = np.argsort(-(qv @ vecs.T), axis=1)[:, :10] + 1
        exact_ok = np.mean([len({c for c, _ in f} & set(r.tolist())) / 10 for f, r in zip(found["exact"], ref,
                                                                                          strict=True)])
        recall = np.mean([len({c for c, _ in a} & {c for c, _ in e}) / 10 for a, e in zip(found["approximate"],
                                                                                       found["exact"], strict=True)])
        result["sizes"][str(size)] = {"recall_at_10": round(float(recall), 4),
                                      "exact_matches_numpy": round(float(exact_ok), 4),
                                      "exact_ms": round(timings["exact"], 3),
                                      "approx_ms": round(timings["approximate"], 3),
                                      "insert_vectors_per_s": round(size / insert)}
        log(f"{size}: {result['sizes'][str(size)]}")
        index.close()

    lines = [f"Search, {result['model']}, {args.threads} threads; {args.queries} CMRC2018 questions; synthetic chunks "
             "from CMRC2018 + CSL passages (see bench/search.py)", "",
             "| chunks | recall@10 HNSW vs exact | exact ms/query | HNSW ms/query | vector insert /s |",
             "|---|---|---|---|---|"]
    for size, r in result["sizes"].items():
        lines.append(f"| {int(size):,} | {r['recall_at_10']:.4f} | {r['exact_ms']:.2f} | {r['approx_ms']:.2f} | "
                     f"{r['insert_vectors_per_s']:,} |")
    b = result["build"]
    lines.append(f"\nIndex build (read, chunk at 400/80, embed, store), {b['documents']} CMRC2018 paragraphs -> "
                 f"{b['chunks']} chunks: {b['chunks_per_s']} chunks/s, {b['chars_per_s']:,} characters/s. Embedding "
                 f"one question: {result['embed_query_ms']} ms (add it to the per-query search time).")
    table = "\n".join(lines)
    print(table)
    write_results(args.output, result, table)


if __name__ == "__main__":
    main()
