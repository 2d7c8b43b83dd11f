"""The one atomic writer: readers never see a half-written file or folder, and a kill at any moment leaves
either the old version or the new one.

Write into a temporary path beside the target, flush it to disk (fsync of the file, or of every file in a
folder), rename it over the target, then fsync the parent folder so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's data, or (a folder) every file below it and the folder entries, to disk."""
    if path.is_dir():
        for sub in sorted(path.rglob("*")):
            if sub.is_file():
                _fsync_file(sub)
        for folder in sorted({p.parent for p in path.rglob("*")} | {path}, key=lambda p: len(p.parts), reverse=True):
            _fsync_dir(folder)
    elif path.exists():
        _fsync_file(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def umask() -> int:
    """This process's umask, without changing it (Linux reports it; elsewhere set-and-restore)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_if_created(path: Path, folder: bool) -> None:
    """mkstemp/mkdtemp make 0600/0700 entries; what is renamed into place gets what open()/mkdir() would give."""
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if folder else 0o666) & ~umask())


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is flushed and renamed over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    as_if_created(tmp_path, folder=False)
    try:
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Atomically replace ``target`` with ``text`` (UTF-8)."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], replace: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; on success it is flushed and becomes ``target``.

    ``replace=False``: if ``target`` appeared meanwhile (another process finished first), the existing one is
    kept. ``replace=True``: an existing ``target`` is swapped out (renamed aside, then removed), so a kill leaves
    the old folder, the new one, or the old one under its aside name next to the new one, never a mix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    as_if_created(tmp, folder=True)
    try:
        yield tmp
        for sub in tmp.rglob("*"):  # libraries inside write through mkstemp too (safetensors' 0600 files)
            if not sub.is_symlink():
                as_if_created(sub, folder=sub.is_dir())
        fsync_path(tmp)
        if replace and target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, aside / target.name)
            os.replace(tmp, target)
            _fsync_dir(target.parent)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            try:
                os.replace(tmp, target)
            except OSError:
                if not target.is_dir():
                    raise
            _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
