"""Where checkpoint figures look for what run records only name (weights files, videos)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Sources:
    """Candidate backbone weights files, a real dataset's videos and annotations, and the
    dataset specs built so far (by name; tests may fill it)."""

    weights: tuple[str, ...] = ()
    video_dir: str | None = None
    annotations: str | None = None
    specs: dict = field(default_factory=dict, repr=False)


class FigureSkipped(RuntimeError):
    """A figure that cannot be drawn from what the ledger holds; the message says why."""


FRAME_DATASETS = ("synthetic", "qvhighlights")   # datasets whose videos figures can read
CHECKPOINT_NAME = "checkpoint.safetensors"


def checkpoint_of(record: dict) -> Path:
    """``<suite folder>/runs/<run_id>/checkpoint.safetensors``."""
    return Path(record.get("_suite_dir", ".")) / "runs" / record["run_id"] / CHECKPOINT_NAME


def check_run(record: dict, sources: Sources, *, checkpoint: bool) -> None:
    """Cheap checks before a model figure imports torch: the run's checkpoint (when needed) and
    a dataset whose videos can be read. Raises ``FigureSkipped`` with the reason."""
    if checkpoint and not checkpoint_of(record).is_file():
        raise FigureSkipped(f"run {record['run_id']} has no checkpoint ({checkpoint_of(record)})")
    name = record.get("dataset")
    if name not in FRAME_DATASETS and name not in sources.specs:
        raise FigureSkipped(f"no figures from frames for dataset {name!r} yet")
    if name == "qvhighlights" and not sources.video_dir and name not in sources.specs:
        raise FigureSkipped("QVHighlights figures need the videos (pass --video-dir)")
