"""Run records as the renderers read them: a suite's ``ledger.jsonl``, each run's per-query values.

``reports`` never imports ``bench``: the ledger is plain JSON lines (one record per run, see
``bench/ledger.py``), read here with :mod:`json`. A suite's output folder holds
``ledger.jsonl``; a run's ``per_query.csv`` (``qid`` + one column per brief metric) is named
by the record's ``per_query`` field (absolute, or relative to the suite folder) or, for
records without that field, found beside the run's predictions file.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import pandas as pd

from r2bench.core.errors import InputError

LEDGER_NAME = "ledger.jsonl"
PER_QUERY_NAME = "per_query.csv"
PAPER_SCALE = "paper-scale"   # the dataset name of --paper-scale records (no training, no metrics)


def load_records(suite_dir: str | Path) -> list[dict]:
    """Every record of ``<suite_dir>/ledger.jsonl`` in file order; a bad line is an
    ``InputError`` naming the file, the line and the field."""
    path = Path(suite_dir) / LEDGER_NAME
    if not path.is_file():
        raise InputError(path, None, None, "no ledger here (run a suite first: python run_all.py --suite NAME)")
    records = []
    for record in read_ledger(path, RECORD_KEYS):
        record["_suite_dir"] = str(Path(suite_dir))
        records.append(record)
    return records


RECORD_KEYS = ("run_id", "method", "status")   # string fields every run record has


def read_ledger(path: Path, required: tuple[str, ...] = RECORD_KEYS,
                corrupt: list[tuple[int, str, InputError]] | None = None) -> list[dict]:
    """The records of one ledger file in file order (blank lines skipped). A line that is not a
    JSON object, or lacks one of the ``required`` string fields, is an ``InputError`` naming the
    file, the line and the field — or, given a ``corrupt`` list, is appended to it as (line
    number, text, error) and skipped. ``bench.ledger.Ledger`` reads its file through this too."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise InputError(path, lineno, None, "corrupt ledger line, not a JSON object")
                for key in required:
                    if not isinstance(record.get(key), str):
                        raise InputError(path, lineno, key, "missing or not a string (expected a run record)")
            except json.JSONDecodeError as e:
                error = InputError(path, lineno, None, f"corrupt ledger line, not JSON ({e.msg})")
            except InputError as e:
                error = e
            else:
                records.append(record)
                continue
            if corrupt is None:
                raise error
            corrupt.append((lineno, line.rstrip("\n"), error))
    return records


def find_suite_dirs(out_dir: str | Path) -> list[Path]:
    """Folders under ``out_dir`` (itself included, two levels deep) that hold a ledger, sorted."""
    out_dir = Path(out_dir)
    found = [p.parent for pattern in (LEDGER_NAME, f"*/{LEDGER_NAME}", f"*/*/{LEDGER_NAME}")
             for p in out_dir.glob(pattern) if p.is_file()]
    return sorted(set(found))


def suite_name(records: list[dict], suite_dir: Path) -> str:
    """The suite the records belong to (their ``suite`` field; the folder name otherwise)."""
    names = sorted({r.get("suite") for r in records if r.get("suite")})
    if len(names) > 1:
        raise InputError(Path(suite_dir) / LEDGER_NAME, None, "suite", f"records of several suites in one ledger: {names}")
    return names[0] if names else Path(suite_dir).name


def resolve(record: dict, value: str | None) -> Path | None:
    """A path a record names: absolute as is; a relative one is looked for in the suite folder,
    then from the working directory (``run_all --out`` relative), then in the run's folder."""
    if not value:
        return None
    path = Path(value)
    if path.is_absolute():
        return path
    candidates = [Path(record.get("_suite_dir", ".")) / path, path, run_dir(record) / path.name]
    return next((p for p in candidates if p.exists()), candidates[0])


def run_dir(record: dict) -> Path:
    """``<suite folder>/runs/<run_id>``, where a run keeps its checkpoint and predictions."""
    return Path(record.get("_suite_dir", ".")) / "runs" / record["run_id"]


def per_query_path(record: dict) -> Path | None:
    """The run's per-query CSV: the record's ``per_query`` field, else ``per_query.csv`` beside
    the predictions; None when neither exists."""
    named = resolve(record, record.get("per_query"))
    if named is not None:
        return named if named.is_file() else None
    preds = resolve(record, record.get("predictions"))
    for folder in ([preds.parent] if preds is not None else []) + [run_dir(record)]:
        if (folder / PER_QUERY_NAME).is_file():
            return folder / PER_QUERY_NAME
    return None


def damaged(record: dict, name: str) -> str | None:
    """What is wrong with the file ``name`` (``per_query``, ``predictions``, ``checkpoint`` …) of a
    record that carries digests of its files (``files``), or None (unchanged, or no digest)."""
    entry = (record.get("files") or {}).get(name)
    if not entry:
        return None
    from r2bench.core.io import check_file
    return check_file(entry, record.get("_suite_dir"))


@lru_cache(maxsize=256)
def _read_per_query(path: str, mtime: float) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(path, None, None, f"not a per-query CSV ({e})") from None
    if "qid" not in frame.columns:
        raise InputError(path, None, "qid", "missing column (expected qid + one column per metric)")
    frame["qid"] = frame["qid"].astype(str)   # qids compare as text (JSON ints and strings alike)
    if frame["qid"].duplicated().any():
        line = int(frame.index[frame["qid"].duplicated()][0]) + 2  # + header, 1-based
        raise InputError(path, line, "qid", f"qid '{frame['qid'][line - 2]}' appears more than once")
    for col in frame.columns.drop("qid"):
        if col != "query":
            try:
                frame[col] = pd.to_numeric(frame[col]).astype(float)
            except (ValueError, TypeError):
                raise InputError(path, None, col, "column is not numeric") from None
    return frame.set_index("qid")


def per_query(record: dict, split: str | None = None) -> pd.DataFrame | None:
    """The run's per-query metric values (index qid as text), or None when it has none; ``split``:
    those of a split it predicted besides its evaluation split (``split_per_query``, e.g. the
    QVHighlights test split scored with its released ground truth). A file that no longer
    matches the digest in its record is refused (``InputError`` naming it)."""
    if split is not None:
        path = resolve(record, (record.get("split_per_query") or {}).get(split))
        if path is None or not path.is_file():
            return None
        name = f"{split}_per_query"
    else:
        path, name = per_query_path(record), "per_query"
    if path is None:
        return None
    problem = damaged(record, name)
    if problem:
        raise InputError(path, None, None, f"refused: {problem}; re-run {record['run_id']} (r2bench run ... --fresh "
                                           f"--run-id {record['run_id']})")
    return _read_per_query(str(path), path.stat().st_mtime).copy()


def predictions(record: dict) -> list[dict]:
    """The run's prediction lines (``qid``, ``query``, ``vid``, windows, saliency); [] without a file."""
    path = resolve(record, record.get("predictions"))
    if path is None or not path.is_file():
        return []
    lines = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(path, lineno, None, f"not JSON ({e.msg})") from None
    return lines


def metric(record: dict, key: str) -> float:
    """A brief metric (``metrics[key]``) or a measurement field (``params_M``, ``memory_gib``); NaN if absent."""
    value = (record.get("metrics") or {}).get(key, record.get(key))
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value
