"""The one atomic writer: readers never see a half-written file or folder, and a kill at any moment leaves
either the old version or the new one.

Write into a temporary path beside the target, flush it to disk (fsync of the file, or of every file in a
folder), rename it over the target, then fsync the parent folder so the rename itself survives a power cut.

Temporary names carry the writer's PID (``.NAME.<pid>.<random>.tmp``, ``.old`` for a folder being swapped out),
so the next write of the same target removes what a killed writer left (its PID is gone) and never touches a live
writer's files; a folder swap killed between its two renames gets the old folder back.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
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


LEGACY_AGE = 24 * 3600  # seconds: a temporary name without a PID (older m3e) this old is abandoned


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders a killed writer of ``target`` left beside it (restoring the old
    folder of an interrupted swap first); returns what was removed."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:(\d+)\.)?[^/]*\.(tmp|old)$")
    removed = []
    now = time.time()
    for entry in sorted(target.parent.iterdir()):
        m = pattern.match(entry.name)
        if not m:
            continue
        pid = m.group(1)
        try:
            if pid is not None and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            if pid is None and now - entry.lstat().st_mtime < LEGACY_AGE:
                continue
            if pid is not None and int(pid) == os.getpid():
                continue  # this process's own writer, still running (a thread)
            if m.group(2) == "old" and not target.exists() and (entry / target.name).exists():
                os.replace(entry / target.name, target)  # a swap killed between its renames: the old one back
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        except OSError:
            continue
    return removed


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is flushed and renamed over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(target), suffix=suffix + ".tmp", dir=target.parent)
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
    clean_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent))
    as_if_created(tmp, folder=True)
    try:
        yield tmp
        for sub in tmp.rglob("*"):  # libraries inside write through mkstemp too (safetensors' 0600 files)
            if not sub.is_symlink():
                as_if_created(sub, folder=sub.is_dir())
        fsync_path(tmp)
        if replace and target.exists():
            aside = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".old", dir=target.parent))
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
