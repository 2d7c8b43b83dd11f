"""First use of a built-in model is serialized: two processes that need it at once build it once."""

from __future__ import annotations

import subprocess
import sys

CHILD = r"""
import json, os, sys, time
from pathlib import Path
from m3e.models.builtin import BuiltinModel

home, start = Path(sys.argv[1]), Path(sys.argv[2])
os.environ["M3E_HOME"] = str(home)

def build(target: Path) -> Path:
    log = home / "builds.log"
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    # Give a second builder the chance to show up (it can only if nothing serializes first use).
    deadline = time.time() + 2
    while time.time() < deadline and len(log.read_text().split()) < 2:
        time.sleep(0.01)
    target.mkdir(parents=True)
    (target / "m3e_provenance.json").write_text(json.dumps({"converter_version": 1}))
    return target

model = BuiltinModel(name="toy", dim=1, description="", provenance="", build=build, version=1)
while not start.exists():
    time.sleep(0.005)
print(model.ensure())
"""


def test_two_processes_build_a_builtin_once(tmp_path):
    start = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "home"), str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    start.write_text("")
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len((tmp_path / "home" / "builds.log").read_text().split()) == 1
    assert outs[0][0] == outs[1][0] and (tmp_path / "home" / "models" / "toy" / "m3e_provenance.json").is_file()
