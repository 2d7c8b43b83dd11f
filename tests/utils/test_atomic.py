"""The atomic writer's outputs get the permissions a plain open()/mkdir() would give under the umask."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from m3e.utils.atomic import atomic_dir, umask, write_text


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_honour_the_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        assert umask() == mask
        f = write_text(tmp_path / "a" / "result.json", "{}")
        assert stat.S_IMODE(f.stat().st_mode) == file_mode
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "config.json").write_text("{}")
            fd, inner = tempfile.mkstemp(dir=tmp)  # what libraries do inside (safetensors)
            os.close(fd)
            os.rename(inner, tmp / "model.safetensors")
            (tmp / "sub").mkdir()
        folder = tmp_path / "model"
        assert stat.S_IMODE(folder.stat().st_mode) == dir_mode
        assert stat.S_IMODE((folder / "sub").stat().st_mode) == dir_mode
        for name in ("config.json", "model.safetensors"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == file_mode, name
    finally:
        os.umask(old)


CHILD = r"""
import os, signal, sys
from pathlib import Path
import m3e.utils.atomic as a

step, kind, target = sys.argv[1], sys.argv[2], Path(sys.argv[3])
real_replace = os.replace
calls = {"n": 0}

def die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)

def replace(src, dst):
    real_replace(src, dst)
    calls["n"] += 1
    last = 1 if kind == "file" else 2
    if step == "after-rename" and calls["n"] == last or step == "mid-swap" and calls["n"] == 1:
        die()

if step == "after-write":
    a.fsync_path = die  # the data is written, nothing renamed yet
os.replace = replace
if kind == "file":
    with a.atomic_path(target) as tmp:
        if step == "before-write":
            die()
        tmp.write_text("new")
else:
    with a.atomic_dir(target, replace=True) as tmp:
        if step == "before-write":
            die()
        (tmp / "f").write_text("new")
"""


def _content(target, kind):
    path = target if kind == "file" else target / "f"
    return path.read_text() if path.exists() else None


def _leftovers(target):
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


@pytest.mark.parametrize("kind", ["file", "folder"])
@pytest.mark.parametrize("step", ["before-write", "after-write", "mid-swap", "after-rename"])
def test_kill_9_at_every_step_leaves_old_or_new_and_the_next_run_cleans(tmp_path, kind, step):
    """A writer killed with SIGKILL at each step: what is on disk reads as old or new once the next writer of the
    same target has started (it restores a half-done folder swap), and no temporary file survives it."""
    import subprocess
    import sys

    from m3e.utils.atomic import atomic_dir, atomic_path, clean_stale

    if kind == "file" and step == "mid-swap":
        pytest.skip("a file is replaced in one rename")
    target = tmp_path / ("result.json" if kind == "file" else "model")
    if kind == "file":
        target.write_text("old")
    else:
        target.mkdir()
        (target / "f").write_text("old")
    proc = subprocess.run([sys.executable, "-c", CHILD, step, kind, str(target)], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    before = _leftovers(target)
    expect_left = step != "after-rename" or kind == "folder"
    assert bool(before) == expect_left, before  # the kill did leave something behind
    removed = clean_stale(target)
    assert _content(target, kind) in ("old", "new") and _leftovers(target) == [] and len(removed) == len(before)
    assert _content(target, kind) == ("new" if step == "after-rename" else "old")
    # and a normal write after it works and leaves nothing
    if kind == "file":
        with atomic_path(target) as tmp:
            tmp.write_text("newer")
    else:
        with atomic_dir(target, replace=True) as tmp:
            (tmp / "f").write_text("newer")
    assert _content(target, kind) == "newer" and _leftovers(target) == []


def test_a_live_writers_temporary_file_is_never_removed(tmp_path):
    import subprocess
    import sys

    from m3e.utils.atomic import clean_stale

    target = tmp_path / "vectors.npy"
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        mine = tmp_path / f".vectors.npy.{live.pid}.abc.tmp"
        mine.write_text("half")
        legacy = tmp_path / ".vectors.npy.xyz123.tmp"  # an older m3e's name (no PID): kept for a day
        legacy.write_text("half")
        assert clean_stale(target) == [] and mine.exists() and legacy.exists()
    finally:
        live.stdin.close()
        live.wait(10)
    assert clean_stale(target) == [mine] and not mine.exists() and legacy.exists()
    os.utime(legacy, (0, 0))
    assert clean_stale(target) == [legacy]
