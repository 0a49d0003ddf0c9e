"""The paper's published tables (committed CSV copies). Which of our rows matches which paper row
is declared with each suite's rows (``r2bench.bench.suites``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_TABLES_DIR = Path(__file__).resolve().parent / "paper_tables"

def paper_table(name: str) -> pd.DataFrame:
    """Load ``reports/paper_tables/<name>.csv`` (e.g. ``"table9_transfer_methods"``)."""
    path = PAPER_TABLES_DIR / f"{name}.csv"
    if not path.is_file():
        available = sorted(p.stem for p in PAPER_TABLES_DIR.glob("*.csv"))
        raise FileNotFoundError(f"no paper table {name!r} in {PAPER_TABLES_DIR}; available: {available}")
    return pd.read_csv(path)
