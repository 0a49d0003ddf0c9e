"""Where a result came from: library versions, the code version, the device."""
from __future__ import annotations

import hashlib
import platform
from pathlib import Path
import subprocess
from functools import lru_cache

import torch

from r2bench.core.io import PACKAGE_ROOT, REPO_ROOT

# The packages whose code decides a run's numbers (reports, tests and docs do not).
CODE_PACKAGES = ("core", "methods", "datasets", "bench")


def _package_dir(name: str) -> Path:
    """Where ``r2bench.<name>`` lives: ``r2bench/<name>`` in a wheel, ``<checkout>/<name>`` in a checkout."""
    return PACKAGE_ROOT / name if (PACKAGE_ROOT / name).is_dir() else (REPO_ROOT or PACKAGE_ROOT) / name


@lru_cache(maxsize=1)
def code_version() -> str:
    """``code-<digest>``: a digest of every ``.py`` file of :data:`CODE_PACKAGES` (named by
    its path inside its package, so a checkout and the wheel built from it agree) — what decides whether a finished run still counts and whether runs may be
    pooled. It is the code, not the commit: a commit that touches only docs or tests keeps the
    version (and every finished run); an uncommitted edit of the code changes it. Plugin files
    loaded before the first call (``--plugin``) count as code too."""
    h = hashlib.blake2b(digest_size=6)
    for pkg in CODE_PACKAGES:
        folder = _package_dir(pkg)
        for path in sorted(folder.rglob("*.py")):
            h.update(f"{pkg}/{path.relative_to(folder).as_posix()}".encode())
            h.update(path.read_bytes())
    from r2bench.methods.registry import PLUGIN_FILES     # a plugin's methods decide numbers too
    for name, digest in sorted(PLUGIN_FILES.items()):
        h.update(f"plugin:{Path(name).name}:{digest}".encode())
    return f"code-{h.hexdigest()}"


def git_commit() -> str | None:
    """The checkout's commit (short), for provenance only; None without git or outside a checkout."""
    if REPO_ROOT is None:
        return None
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import open_clip
    import peft
    import timm
    return dict(python=platform.python_version(), torch=torch.__version__, open_clip=open_clip.__version__,
                peft=peft.__version__, timm=timm.__version__)


def device_info(device: torch.device) -> dict:
    """The device in words, and what a memory figure on it depends on."""
    info = dict(device=str(device), threads=torch.get_num_threads())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    sdpa=dict(flash=torch.backends.cuda.flash_sdp_enabled(),
                              mem_efficient=torch.backends.cuda.mem_efficient_sdp_enabled(),
                              math=torch.backends.cuda.math_sdp_enabled()))
    else:
        info.update(name=platform.processor() or platform.machine())
    return info
