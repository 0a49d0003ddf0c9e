"""A run's identity, defined once: what changes its result, how its id is made from it, and which
of it runs must share to be pooled as seeds of one table row.

``r2bench.bench.run.run_identity`` fills these fields from a run's spec and context; every run
record carries them at its top level; ``r2bench.reports.stats`` pools records whose fields
agree (the seed apart). Adding a field here adds it to both.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

# Everything that changes a run's result. ``domain``: one model per domain (YouTube Highlights,
# TVSum); ``missing_videos``: a digest of the videos absent from the video folder (a run on
# another set of available videos is another run). Absent fields count as None.
IDENTITY_FIELDS = (
    "method", "config", "train_config", "dataset", "dataset_version", "benchmark_version",
    "backbone", "weights", "seed", "domain", "missing_videos",
)
SEED_FIELD = "seed"
# Runs pooled as seeds of one row agree on every identity field but the seed, and on the code
# that made them (``code_version``).
POOL_FIELDS = tuple(f for f in IDENTITY_FIELDS if f != SEED_FIELD) + ("code_version",)


def canonical(value) -> str:
    """Canonical JSON (sorted keys) of an identity or a field of one."""
    return json.dumps(value, sort_keys=True, default=str)


def make_run_id(suite: str, identity: Mapping) -> str:
    """``<suite>-<method>-<dataset>[-<domain>]-s<seed>-<digest of the identity>``."""
    unknown = sorted(set(identity) - set(IDENTITY_FIELDS) - {"device"})
    if unknown:
        raise ValueError(f"run identity has fields {unknown} that r2bench.core.identity does not define")
    digest = hashlib.sha256(canonical(dict(identity)).encode()).hexdigest()[:10]
    dataset = str(identity["dataset"]) + (f"-{identity['domain']}" if identity.get("domain") else "")
    parts = (suite, identity["method"], dataset, f"s{identity.get(SEED_FIELD, 0)}")
    readable = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(p)) for p in parts)
    return f"{readable}-{digest}"


def pool_identity(record: Mapping) -> dict:
    """The fields runs of one row must share (absent → None), the seed removed from ``train_config`` too."""
    ident = {f: record.get(f) for f in POOL_FIELDS}
    if isinstance(ident.get("train_config"), Mapping):
        ident["train_config"] = {k: v for k, v in ident["train_config"].items() if k != SEED_FIELD}
    return ident
