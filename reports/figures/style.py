"""One look for every figure: seaborn's paper context, embedded TrueType fonts, PNG + PDF."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from r2bench.core.io import atomic_write  # noqa: E402
from r2bench.reports.figures.sources import FigureSkipped  # noqa: E402,F401  (figure modules raise it)

COLUMN_WIDTH = 3.3   # inches: one column of a two-column paper
TEXT_WIDTH = 6.9     # inches: the full text width
DPI = 200
# memory-efficient (no gradient through CLIP) vs gradient through CLIP
FAMILY_COLOURS = {"METL": "#1b9e77", "PETL": "#d95f02"}
FAMILY_LABELS = {"METL": "no gradient through CLIP (frozen, METL)", "PETL": "gradient through CLIP (full, PETL)"}
CATEGORY_FAMILY = {"frozen": "METL", "no-tuning": "METL", "METL": "METL", "full": "PETL", "PETL": "PETL"}


def setup() -> None:
    """seaborn's paper context with sizes fit for print; fonts embedded as TrueType in PDFs."""
    logging.getLogger("fontTools").setLevel(logging.WARNING)   # its font subsetting narrates at INFO
    sns.set_theme(context="paper", style="whitegrid", font="DejaVu Sans", rc={
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
        "legend.fontsize": 7, "figure.titlesize": 9, "pdf.fonttype": 42, "ps.fonttype": 42,
        "axes.linewidth": 0.6, "grid.linewidth": 0.4, "lines.linewidth": 1.2, "savefig.bbox": "tight",
        "savefig.pad_inches": 0.02})


def save(fig, out_dir: str | Path, stem: str) -> list[Path]:
    """``<stem>.png`` and ``<stem>.pdf`` in ``out_dir`` (written atomically); closes ``fig``."""
    out_dir = Path(out_dir)
    paths = []
    try:
        for ext in ("png", "pdf"):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=DPI, metadata={"CreationDate": None} if ext == "pdf" else None)
            paths.append(atomic_write(out_dir / f"{stem}.{ext}", buf.getvalue()))
    finally:
        plt.close(fig)
    return paths
