"""Where m3e keeps converted models and caches."""

from __future__ import annotations

import os
from pathlib import Path


def m3e_home() -> Path:
    """``$M3E_HOME``, else ``$XDG_CACHE_HOME/m3e``, else ``~/.cache/m3e``."""
    if os.environ.get("M3E_HOME"):
        return Path(os.environ["M3E_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "m3e"


def models_dir() -> Path:
    return m3e_home() / "models"


def check_output(path: Path, *, folder: bool) -> None:
    """Refuse, before any work, an output that cannot be written: a file where a folder goes (or the reverse),
    a parent that is a file, or a place this user may not write. Nothing is created."""
    from m3e.errors import InputError

    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise InputError(f"--output {path}: exists and is a file, not a folder")
        if not folder and path.is_dir():
            raise InputError(f"--output {path}: is a folder; give a file name")
        target = path if folder else path.parent
        if not os.access(target, os.W_OK | os.X_OK):
            raise InputError(f"--output {path}: no permission to write in {target}")
        return
    parent = path.parent
    while not parent.exists():  # the first existing ancestor decides whether the folders can be created
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--output {path}: {parent} is a file, so {path} cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--output {path}: no permission to create it in {parent}")


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """A hash of a file's bytes (blake2b-128), read a MiB at a time: resume decisions by content, not by mtime."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
