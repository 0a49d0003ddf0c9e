"""Run ledger: one JSON record per run in ``ledger.jsonl`` (rewritten atomically) and ``results.csv``.

Several processes may write one ledger at once (Slurm jobs of a suite, two terminals): every
read-modify-write holds an exclusive lock on ``.ledger.lock`` beside it (``filelock``, an
``fcntl`` lock on POSIX, which NFSv4 and Lustre honour). A record that is ``ok`` is never
replaced by a later attempt of the same run that did not finish: that attempt is kept in
the ok record's ``failed_attempts`` list instead, so a failed ``--fresh`` re-run loses nothing.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from filelock import FileLock

from r2bench.core.io import atomic_write
from r2bench.reports.records import LEDGER_NAME, read_ledger

LOCK_NAME = ".ledger.lock"
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

    @contextmanager
    def locked(self):
        """Hold the ledger's file lock (re-entrant within a process)."""
        with self._lock:
            yield

    def records(self) -> list[dict]:
        """All records in file order; a corrupt line raises ``InputError`` naming file and line."""
        if not self.path.exists():
            return []
        return read_ledger(self.path, required=("run_id",))

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
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in records))
        return payload

    def done(self, run_id: str, code_version: str | None = None) -> bool:
        """True if ``run_id`` has a record with status ``"ok"`` (made by ``code_version``, when given)."""
        return any(r["run_id"] == run_id and r.get("status") == "ok"
                   and (code_version is None or r.get("code_version") == code_version) for r in self.records())

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
