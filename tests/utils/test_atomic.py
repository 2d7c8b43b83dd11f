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
