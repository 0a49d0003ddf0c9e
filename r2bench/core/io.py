"""Where the suite keeps generated data, checkpoints and features, and how it writes files.

Every output is written to a temporary sibling first and renamed into place
(:func:`atomic_write`, :func:`temp_dir_for`), so a kill at any moment leaves either the old
file or the new one. The temporary names say who made them,
``.<name>.r2tmp-<host>-<pid>-<8 random characters>``, so that :func:`clean_orphans` can delete
the ones a killed writer of this machine left behind, and nothing else (see there). Files and
folders get the usual permissions (``0o666``/``0o777`` less the umask), not ``mkstemp``'s ``0o600``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
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
# Exactly what _temp_prefix + mkstemp/mkdtemp make: host (no '-'), pid, and tempfile's 8 random
# characters. A name that differs in any way is not ours, however similar it looks.
_OURS = re.compile(r"^\.(?P<name>.+)\.r2tmp-(?P<host>[A-Za-z0-9_]{1,40})-(?P<pid>[1-9][0-9]{0,9})-[a-z0-9_]{8}$")


def cache_root() -> Path:
    """``$R2BENCH_CACHE``, else the user cache folder: ``$XDG_CACHE_HOME/r2bench`` or
    ``~/.cache/r2bench`` (not created)."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("R2BENCH_CACHE") or user_cache / "r2bench")


def cache_dir() -> Path:
    """:func:`cache_root`, created on first use."""
    root = cache_root()
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


def is_orphan(entry: Path) -> bool:
    """Whether ``entry`` is provably a temp file or folder of this project that no writer will
    finish: its name is exactly one of ours (:data:`_OURS`), its writer ran on this host, and
    that process is gone. Anything else — other names, look-alikes, temp files of writers on
    other hosts of a shared file system (they cannot be asked) — is never an orphan."""
    ours = _OURS.match(entry.name)
    if not ours or ours["host"] != _host():
        return False
    return not _alive(int(ours["pid"]))


def clean_orphans(root: str | os.PathLike) -> list[Path]:
    """Delete the orphaned temp files and folders (:func:`is_orphan`) under ``root``; returns them.
    Call it only once a command has been validated: it is the one place that deletes files."""
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            if not name.startswith(".") or TEMP_TAG not in name:
                continue
            entry = Path(dirpath) / name
            if not is_orphan(entry):
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
        log.info("removed %d orphaned temp file(s)/folder(s) left by killed writers under %s: %s", len(removed), root,
                 ", ".join(str(p.relative_to(root)) for p in removed[:5]) + (" …" if len(removed) > 5 else ""))
    return removed


# --------------------------------------------------------------------------- digests of outputs

def _blake2b(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | os.PathLike, relative_to: str | os.PathLike | None = None) -> dict:
    """What a record says of a file it made: its path (relative to ``relative_to`` when inside
    it), size and blake2b digest — so that a later command can tell it is still that file."""
    path = Path(path)
    shown = path
    if relative_to is not None:
        try:
            shown = path.resolve().relative_to(Path(relative_to).resolve())
        except ValueError:
            pass
    return {"path": shown.as_posix(), "bytes": path.stat().st_size, "blake2b": _blake2b(path)}


def check_file(entry: dict, base: str | os.PathLike | None = None) -> str | None:
    """None if the file a record names (:func:`file_digest`'s entry) is there unchanged, else
    what is wrong with it (missing, another size, another digest)."""
    path = Path(entry.get("path", ""))
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    try:
        size = path.stat().st_size
    except OSError:
        return f"{path} is missing"
    if size != entry.get("bytes"):
        return f"{path} has {size} bytes, the record says {entry.get('bytes')} (damaged or replaced)"
    if _blake2b(path) != entry.get("blake2b"):
        return f"{path} does not match the digest in its record (damaged or edited)"
    return None
