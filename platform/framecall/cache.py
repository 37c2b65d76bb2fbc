"""Where framecall keeps things it builds once per machine (tiny models, espeak overlay)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$FRAMECALL_CACHE`` (default ``~/.cache/framecall``) joined with ``parts``, created."""
    root = Path(os.environ.get("FRAMECALL_CACHE", Path.home() / ".cache" / "framecall"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
