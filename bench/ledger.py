"""Run ledger: one JSON record per run in ``ledger.jsonl`` (rewritten atomically) and ``results.csv``.

Several processes may write one ledger at once (Slurm jobs of a suite, two terminals): every
read-modify-write holds an exclusive lock on ``.ledger.lock`` beside it (``filelock``, an
``fcntl`` lock on POSIX, which NFSv4 and Lustre honour). A record that is ``ok`` is never
replaced by a later attempt of the same run that did not finish: that attempt is kept in
the ok record's ``failed_attempts`` list instead, so a failed ``--fresh`` re-run loses nothing.

A finished run is verified, not trusted (:meth:`Ledger.verified`): its record must be ``ok``,
made by this code, and every file it names (checkpoint, predictions, per-query values) must
still match the digest in it. A corrupt ledger line (a truncated write, a hand edit) is reported
with its line number, moved to ``ledger.rejected.jsonl`` on the next write, and the suite goes
on. A run being trained is **claimed** (:meth:`Ledger.claim`: a lock file per run, released on
exit or crash), so two commands on one output folder share the work instead of doubling it.
"""
from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from r2bench.core.io import atomic_write, check_file
from r2bench.reports.records import LEDGER_NAME, read_ledger

log = logging.getLogger(__name__)
LOCK_NAME = ".ledger.lock"
REJECTED_NAME = "ledger.rejected.jsonl"
CLAIM_NAME = ".claim.lock"
ATTEMPT_KEYS = ("status", "error", "fault", "started", "wall_s", "code_version", "device")
RESULTS_NAME = "results.csv"
LEADING_COLUMNS = (
    "method", "label", "status", "error", "params", "params_M", "memory_gib", "memory_source",
    "train_videos_per_s", "infer_videos_per_s", "wall_s",
)
TRAILING_COLUMNS = ("backbone", "weights", "dataset", "seed", "run_id")
METRIC_PREFIXES = ("MR-", "HL-")  # metric columns: MR keys, then HL keys, then any others


def _to_json(obj):
    """JSON fallback for paths and numpy/torch scalars; anything else is an error."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"run record value of type {type(obj).__name__} is not JSON serialisable")


def _metric_columns(records: list[dict]) -> list[str]:
    """Every metrics key, MR keys first, then HL keys, then others; first-appearance order within a group."""
    keys = dict.fromkeys(k for r in records for k in (r.get("metrics") or {}))
    group = lambda k: next((i for i, p in enumerate(METRIC_PREFIXES) if k.startswith(p)), len(METRIC_PREFIXES))
    return sorted(keys, key=group)


class Ledger:
    """Run records (plain dicts, keyed by ``run_id``) persisted in ``<directory>/ledger.jsonl``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / LEDGER_NAME
        self._lock = FileLock(str(self.directory / LOCK_NAME))
        self._warned: set = set()
        self._corrupt: list = []

    @contextmanager
    def locked(self):
        """Hold the ledger's file lock (re-entrant within a process)."""
        with self._lock:
            yield

    def records(self) -> list[dict]:
        """All records in file order. A corrupt line is skipped with a warning naming its line
        (it is set aside on the next write: :meth:`append`)."""
        if not self.path.exists():
            return []
        corrupt: list = []
        records = read_ledger(self.path, required=("run_id",), corrupt=corrupt)
        for lineno, _, error in corrupt:
            key = (lineno, str(error))
            if key not in self._warned:
                self._warned.add(key)
                log.warning("%s; the line is skipped and will be moved to %s", error, self.directory / REJECTED_NAME)
        self._corrupt = corrupt
        return records

    def append(self, record: dict) -> dict:
        """Add ``record``, replacing (in place) an earlier record with the same ``run_id`` —
        except an ``ok`` one, which a record of another status never replaces: the attempt is
        added to its ``failed_attempts`` instead. Returns the record the ledger now holds."""
        run_id = record.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run record needs a non-empty string 'run_id', got {run_id!r}")
        payload = json.loads(json.dumps(record, default=_to_json))   # not serialisable: fail before the lock
        with self.locked():
            records = self.records()
            for i, old in enumerate(records):
                if old["run_id"] == run_id:
                    if old.get("status") == "ok" and payload.get("status") != "ok":
                        attempt = {k: payload.get(k) for k in ATTEMPT_KEYS if k in payload}
                        payload = {**old, "failed_attempts": [*old.get("failed_attempts", []), attempt]}
                    elif old.get("failed_attempts") and "failed_attempts" not in payload:
                        payload["failed_attempts"] = old["failed_attempts"]
                    records[i] = payload
                    break
            else:
                records.append(payload)
            self._set_aside_corrupt()
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in records))
        return payload

    def _set_aside_corrupt(self) -> None:
        """Append the corrupt lines last read to ``ledger.rejected.jsonl`` (with their line number
        and why), so that rewriting the ledger drops nothing without a trace."""
        if not self._corrupt:
            return
        path = self.directory / REJECTED_NAME
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        new = "".join(json.dumps(dict(line=n, error=str(e), text=text)) + "\n" for n, text, e in self._corrupt)
        atomic_write(path, old + new)
        log.warning("moved %d corrupt ledger line(s) to %s", len(self._corrupt), path)
        self._corrupt = []

    def done(self, run_id: str, code_version: str | None = None) -> bool:
        """True if ``run_id`` has a verified record (:meth:`verified`)."""
        return self.verified(run_id, code_version) is None

    def verified(self, run_id: str, code_version: str | None = None) -> str | None:
        """None if ``run_id`` is finished: an ``ok`` record (made by ``code_version``, when given)
        whose files are all there unchanged; else why it must run (again)."""
        record = next((r for r in self.records() if r["run_id"] == run_id), None)
        if record is None:
            return "not run yet"
        if record.get("status") != "ok":
            return f"its last attempt is {record.get('status')}"
        if code_version is not None and record.get("code_version") != code_version:
            return f"made by other code ({record.get('code_version')})"
        for name, entry in (record.get("files") or {}).items():
            problem = check_file(entry, self.directory)
            if problem:
                return f"its {name} file: {problem}"
        return None

    @contextmanager
    def claim(self, run_id: str):
        """Hold ``runs/<run_id>/.claim.lock`` while this process runs ``run_id``; yields False (and
        holds nothing) when another process holds it. The lock goes with the process (an
        ``fcntl`` lock), so a killed command leaves no stale claim."""
        folder = self.directory / "runs" / run_id
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / CLAIM_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def claimed_elsewhere(self, run_id: str) -> bool:
        """Whether another process holds ``run_id``'s claim right now."""
        with self.claim(run_id) as mine:
            return not mine

    def write_results_csv(self) -> Path:
        """Write ``results.csv``: one row per record, contract columns with the metrics flattened."""
        with self.locked():
            return self._write_results_csv()

    def _write_results_csv(self) -> Path:
        records = self.records()
        columns = [*LEADING_COLUMNS, *_metric_columns(records), *TRAILING_COLUMNS]
        rows = [{**{c: r.get(c) for c in LEADING_COLUMNS + TRAILING_COLUMNS}, **(r.get("metrics") or {})}
                for r in records]
        frame = pd.DataFrame(rows, columns=columns)
        return atomic_write(self.directory / RESULTS_NAME, frame.to_csv(index=False, lineterminator="\n"))
