"""Table of a sweep's results: the seven text2vec STS tasks, their average, and the s2p retrieval average."""

import json
import sys
from pathlib import Path

T2V = ["ATEC", "BQ", "LCQMC", "PAWSX", "STSB", "SOHU-dd", "SOHU-dc"]
S2P = ["CMRC2018Retrieval", "CSLRetrieval"]
nan = float("nan")
results: dict[str, dict[str, float]] = {}
for f in sorted(Path(sys.argv[1]).glob("*/eval*/*/*.json")):
    d = json.loads(f.read_text())
    results.setdefault(f"{f.parts[-4]}/{f.parts[-3]}", {})[d["task"]] = 100 * d["main_score"]
print("run".ljust(14), " ".join(t[:7].rjust(7) for t in T2V + S2P), "   t2v7     s2p")
for run, r in results.items():
    t2v = sum(r[t] for t in T2V) / 7 if all(t in r for t in T2V) else nan
    s2p = sum(r[t] for t in S2P) / 2 if all(t in r for t in S2P) else nan
    print(run.ljust(14), " ".join(f"{r.get(t, nan):7.2f}" for t in T2V + S2P), f"{t2v:7.2f} {s2p:7.2f}")
