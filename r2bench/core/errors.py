"""The one error type for bad input: it always names the file, the line and the field."""
from __future__ import annotations

import errno
import logging
from os import PathLike
from pathlib import Path
from typing import Callable


class InputError(ValueError):
    """Bad input data. ``str()`` reads ``"<path>:<line>: field '<field>': <message>"``."""

    def __init__(self, path: str | PathLike | None, line: int | None, field: str | None, message: str):
        self.path = str(path) if path is not None else "<input>"
        self.line = line
        self.field = field
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")


# --------------------------------------------------------------------------- errors a command line meets

_ADVICE = {
    errno.EROFS: "the file system is read-only: choose another folder (--out, R2BENCH_CACHE)",
    errno.EACCES: "permission denied: choose a folder you can write to (--out, R2BENCH_CACHE) or fix its permissions",
    errno.EPERM: "not permitted: choose a folder you can write to (--out, R2BENCH_CACHE) or fix its permissions",
    errno.ENOSPC: "the disk is full: free space there, or point --out / R2BENCH_CACHE at another disk",
    errno.EDQUOT: "disk quota exceeded: free space there, or point --out / R2BENCH_CACHE at another disk",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENOTDIR: "a path component is not a folder: check the path",
    errno.EISDIR: "a folder where a file was expected: check the path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer --workers",
}


def which_folder(path: str | PathLike | None, named: dict[str, str | PathLike | None] | None = None) -> str:
    """``' (the output folder)'`` / ``' (the cache folder)'`` … when ``path`` lies under one of
    ``named`` ({description: folder}); else ``''``."""
    if path is None:
        return ""
    try:
        p = Path(path).resolve()
        for what, folder in (named or {}).items():
            if folder is not None and (p == Path(folder).resolve() or Path(folder).resolve() in p.parents):
                return f" ({what})"
    except (OSError, RuntimeError):
        pass
    return ""


def describe_os_error(e: OSError, named: dict[str, str | PathLike | None] | None = None) -> str:
    """One line: what failed, on which path (and which of the ``named`` folders holds it), and what to do."""
    path = e.filename if e.filename is not None else None
    where = f" {path}{which_folder(path, named)}" if path is not None else ""
    if e.filename2 is not None:
        where += f" -> {e.filename2}"
    reason = e.strerror or str(e) or type(e).__name__
    advice = _ADVICE.get(e.errno or -1)
    return f"{reason}:{where}" + (f" — {advice}" if advice else "")


def default_named_folders() -> dict[str, str | None]:
    """The folders an error message can name: the cache (``R2BENCH_CACHE`` or the user cache)."""
    from r2bench.core.io import cache_root
    return {"the cache folder, R2BENCH_CACHE": str(cache_root())}


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:
    logging.getLogger("r2bench").warning("warning: %s", message)


def warnings_to_log() -> None:
    """Python warnings (ours, e.g. clamped annotation windows, and libraries') as log lines in the
    project's format, ``warning: <message>``, not ``file:line: Category: message``."""
    import warnings
    warnings.showwarning = _warning_to_log


def guarded(main: Callable[..., int | None], *args, named: dict | None = None, **kwargs) -> int:
    """Run a command's ``main``; bad input (``InputError``) and failing files (``OSError``: read-only,
    full disk, permissions) end in one line on stderr and a non-zero exit (2 and 1), never a
    traceback. Ctrl-C exits 130."""
    log = logging.getLogger("r2bench")
    warnings_to_log()
    try:
        return main(*args, **kwargs) or 0
    except InputError as e:
        log.error("error: %s", e)
        return 2
    except OSError as e:
        folders = {**default_named_folders(), **(named or {})}
        log.error("error: %s", describe_os_error(e, folders))
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
