"""The paper's published tables (committed CSV copies) and our registry ↔ paper row-name mapping."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_TABLES_DIR = Path(__file__).resolve().parent / "paper_tables"

# method registry name -> row name in the paper's tables
PAPER_ROW_NAMES = {
    "frozen": "w/o Tuning",
    "full": "Full-Tuning",
    "lora": "LoRA",
    "vpt": "VPT",
    "vop": "VoP",
    "st_adapter": "ST-Adapter",
    "e3va": "E3VA",
    "losa": "LoSA",
    "lst": "LST",
    "r2_tuning": "R2-Tuning",
}


def paper_table(name: str) -> pd.DataFrame:
    """Load ``reports/paper_tables/<name>.csv`` (e.g. ``"table9_transfer_methods"``)."""
    path = PAPER_TABLES_DIR / f"{name}.csv"
    if not path.is_file():
        available = sorted(p.stem for p in PAPER_TABLES_DIR.glob("*.csv"))
        raise FileNotFoundError(f"no paper table {name!r} in {PAPER_TABLES_DIR}; available: {available}")
    return pd.read_csv(path)
