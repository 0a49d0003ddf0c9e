"""Where the suite keeps generated data, checkpoints and features."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"


def cache_dir() -> Path:
    """``$R2BENCH_CACHE`` or ``~/.cache/r2bench`` (created on first use)."""
    root = Path(os.environ.get("R2BENCH_CACHE", Path.home() / ".cache" / "r2bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root
