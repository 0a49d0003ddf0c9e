"""Where the suite keeps generated data, checkpoints and features, and how it writes files.

Every output is written to a temporary sibling first and renamed into place
(:func:`atomic_write`, :func:`temp_dir_for`), so a kill at any moment leaves either the old
file or the new one. The temporary names say who made them,
``.<name>.r2tmp-<host>-<pid>-<random>``, so that :func:`clean_orphans` can delete the ones a
killed writer left behind, and only those (see there). Files and folders get the usual
permissions (``0o666``/``0o777`` less the umask), not ``mkstemp``'s ``0o600``.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parent.parent        # the r2bench package folder


def _checkout_root() -> Path | None:
    """The source checkout this code runs from (it holds ``run_all.py`` and ``methods/``), or
    None for an installed wheel."""
    root = PACKAGE_ROOT.parent
    return root if (root / "run_all.py").is_file() and (root / "methods" / "registry.py").is_file() else None


REPO_ROOT = _checkout_root()
# The project's reference material (public annotations, fixtures): $R2BENCH_SHARED, else the
# ``shared`` folder beside a checkout. Only defaults and tests read it; a user passes files.
SHARED_DIR = Path(os.environ.get("R2BENCH_SHARED") or ((REPO_ROOT or PACKAGE_ROOT).parent / "shared"))


def default_out_dir() -> Path:
    """Where outputs go unless ``--out`` says otherwise: ``./out`` in the working directory."""
    return Path("out")

TEMP_TAG = ".r2tmp-"
ORPHAN_MAX_AGE_S = 24 * 3600        # any temp name of ours older than this is an orphan, whoever made it
_OURS = re.compile(r"^\..+\.r2tmp-(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
# names written before the temp names carried their writer (atomic_write's and the generator's)
_LEGACY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$|^\..+\.tmp-[A-Za-z0-9_]{8}$")


def cache_dir() -> Path:
    """``$R2BENCH_CACHE``, else the user cache folder: ``$XDG_CACHE_HOME/r2bench`` or
    ``~/.cache/r2bench`` (created on first use)."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = Path(os.environ.get("R2BENCH_CACHE") or user_cache / "r2bench")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def _temp_prefix(name: str) -> str:
    return f".{name}{TEMP_TAG}{_host()}-{os.getpid()}-"


def umask() -> int:
    """The process umask: from ``/proc/self/status`` where Linux offers it (reading it with
    ``os.umask`` means setting it, which races with threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync, then ``os.replace`` it into place
    (and fsync the directory on POSIX), so a crash never leaves a half-written file. The file
    gets mode ``0o666`` less the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix="")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~umask())
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if os.name == "posix":
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def temp_dir_for(path: str | os.PathLike) -> Path:
    """A new empty folder beside ``path`` to fill and then rename onto it (mode ``0o777`` less
    the umask; its name marks it as ours for :func:`clean_orphans`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path.name)))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # someone else's process
        return True
    return True


def is_orphan(entry: Path, now: float | None = None, max_age_s: float = ORPHAN_MAX_AGE_S) -> bool:
    """Whether ``entry`` is a temp file or folder of ours that no writer will finish: its
    writer (named in it) ran on this host and is gone, or it is older than ``max_age_s``
    (a writer on another host of a shared file system cannot be asked). Names that are not
    ours are never orphans."""
    name = entry.name
    ours, legacy = _OURS.match(name), _LEGACY.match(name)
    if not (ours or legacy):
        return False
    try:
        age = (now or time.time()) - entry.lstat().st_mtime
    except FileNotFoundError:
        return False
    if age > max_age_s:
        return True
    return bool(ours) and ours["host"] == _host() and not _alive(int(ours["pid"]))


def clean_orphans(root: str | os.PathLike, max_age_s: float = ORPHAN_MAX_AGE_S) -> list[Path]:
    """Delete the orphaned temp files and folders (:func:`is_orphan`) under ``root``; returns them."""
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    now = time.time()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            if not name.startswith("."):
                continue
            entry = Path(dirpath) / name
            if not is_orphan(entry, now, max_age_s):
                continue
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                    dirnames.remove(name)
                else:
                    entry.unlink()
            except OSError as e:
                log.warning("could not remove orphaned temp %s: %s", entry, e)
                continue
            removed.append(entry)
    if removed:
        log.info("removed %d orphaned temp file(s)/folder(s) left by killed writers under %s", len(removed), root)
    return removed
