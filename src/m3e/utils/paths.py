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
