"""Table 9 (transfer methods): our measured runs beside the paper's numbers, as Markdown, LaTeX and CSV.

Markdown and LaTeX are written by hand, so neither ``tabulate`` nor ``jinja2`` is needed.
Usage: ``python -m reports.tables.table9 RESULTS_CSV --out DIR [--paper CSV] [--include-missing]``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from datasets.io import atomic_write
from datasets.errors import InputError
from reports.paper import PAPER_ROW_NAMES, paper_table

PAPER_TABLE = "table9_transfer_methods"
# (column group, our results.csv column, the paper CSV's column, number format)
COLUMNS = (
    ("#Params (M)", "params_M", "params_M", "size"),
    ("Memory (GiB)", "memory_gib", "memory_GB", "size"),
    ("MR R1@0.5", "MR-full-R1@0.5", "MR-R1@0.5", "metric"),
    ("MR R1@0.7", "MR-full-R1@0.7", "MR-R1@0.7", "metric"),
    ("MR mAP", "MR-full-mAP", "MR-mAP", "metric"),
    ("HD mAP", "HL-min-VeryGood-mAP", "HD-mAP", "metric"),
    ("HD HIT@1", "HL-min-VeryGood-Hit1", "HD-HIT@1", "metric"),
)
REQUIRED = ("method", "status", "error", "params_M", "memory_gib", "memory_source",
            "backbone", "weights", "dataset", "seed")
PAPER_REQUIRED = ("method", "kind", *(c[2] for c in COLUMNS))
MISSING = "–"
NOTE_CHARS = 80  # Markdown/LaTeX notes are cut here; table9.csv keeps the full error
RANDOM_INIT_WARNING = "WARNING: randomly initialised backbone — metrics not comparable to the paper."
PAPER_SETTING = ("Paper: QVHighlights val, CLIP ViT-B/32 backbone (R²-Tuning, Table 9); "
                 "paper memory as printed (GB).")


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value) -> str:
    return "" if _nan(value) else str(value)


def _read_results(path) -> pd.DataFrame:
    """Read a ``results.csv`` written by ``bench.ledger``; bad files raise ``InputError``."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(path, None, None, "results CSV not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError(path, None, None, f"not a results CSV ({e})") from None
    for col in REQUIRED:
        if col not in frame:
            raise InputError(path, None, col, "missing column (expected a results.csv from bench.ledger)")
    for col in {c[1] for c in COLUMNS} & set(frame.columns):
        try:
            frame[col] = pd.to_numeric(frame[col]).astype(float)
        except (ValueError, TypeError):
            raise InputError(path, None, col, "column is not numeric") from None
    return frame


def _paper_frame(paper) -> pd.DataFrame:
    """The paper table: ``None`` → committed copy, a path → that CSV, a DataFrame as is."""
    if paper is None:
        frame, source = paper_table(PAPER_TABLE), PAPER_TABLE
    elif isinstance(paper, pd.DataFrame):
        frame, source = paper, None
    else:
        frame, source = pd.read_csv(paper), paper
    for col in PAPER_REQUIRED:
        if col not in frame:
            raise InputError(source, None, col, "missing column in the paper table")
    return frame


def _summary(runs: pd.DataFrame) -> dict:
    """Our cells for one method: mean over its ok runs, else the latest run; plus status and note."""
    ok = runs[runs["status"] == "ok"]
    failed = runs[runs["status"] != "ok"]
    shown = ok if len(ok) else runs.iloc[[-1]]
    out = {c[1]: shown[c[1]].mean() if c[1] in shown else math.nan for c in COLUMNS}
    notes = [f"mean of {len(ok)} runs"] if len(ok) > 1 else []
    if len(failed):
        last = failed.iloc[-1]
        count = f" ({len(failed)} runs)" if len(failed) > 1 else ""
        notes.append(f"{last['status']}{count}: {_text(last['error']) or 'no reason recorded'}")
    out["status"] = "ok" if len(ok) else _text(shown.iloc[0]["status"])
    out["runs"] = len(ok)
    out["note"] = "; ".join(notes)
    out["memory_source"] = ", ".join(sorted({_text(s) for s in shown["memory_source"]} - {""}))
    return out


def _rows(results: pd.DataFrame, paper: pd.DataFrame, include_missing: bool) -> list[dict]:
    """Paper rows in paper order (unrun ones only if ``include_missing``), then our methods the paper lacks."""
    groups = dict(tuple(results.groupby("method", sort=False)))
    first = results.drop_duplicates("method")
    labels = first["label"] if "label" in first else first["method"]
    by_name = {}  # displayed row name -> our registry name
    for method, label in zip(first["method"], labels):
        by_name.setdefault(PAPER_ROW_NAMES.get(method) or _text(label) or method, method)
    targets = []
    for _, p in paper.iterrows():
        method = by_name.pop(p["method"], None)
        if method is not None or include_missing:
            targets.append((p["method"], p["kind"], method, p))
    targets += [(name, "", method, None) for name, method in by_name.items()]

    rows = []
    for name, kind, method, p in targets:
        ours = _summary(groups[method]) if method is not None else {"status": "not run", "runs": 0, "note": "not run"}
        row = {"Method": name, "Kind": _text(kind), "method": method or "", "status": ours["status"],
               "runs": ours["runs"], "note": ours["note"], "memory_source": ours.get("memory_source", "")}
        for group, ours_col, paper_col, _ in COLUMNS:
            row[f"{group} ours"] = ours.get(ours_col, math.nan)
            row[f"{group} paper"] = float(p[paper_col]) if p is not None else math.nan
        rows.append(row)
    return rows


def _setting(results: pd.DataFrame) -> list[str]:
    """Header lines: the random-init warning (when a random-init run has metrics), our setting,
    the paper's setting."""
    def values(col: str) -> str:
        return ", ".join(sorted({_text(v) for v in results[col]} - {""})) or "none"

    metric_cols = [c[1] for c in COLUMNS if c[3] == "metric" and c[1] in results]
    random_rows = results[results["weights"] == "random-init"]
    has_metrics = not random_rows.empty and random_rows[metric_cols].notna().any(axis=None)
    lines = [RANDOM_INIT_WARNING] if has_metrics else []
    lines.append(f"Ours: dataset {values('dataset')}; backbone {values('backbone')}; weights {values('weights')}; "
                 f"memory source {values('memory_source')} (est. = estimated, not a measured peak).")
    lines.append(PAPER_SETTING)
    return lines


def _fmt(value, kind: str) -> str:
    if _nan(value):
        return MISSING
    if kind == "metric":
        return f"{value:.2f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _cells(row: dict) -> list[str]:
    """Display cells of one row: Method, Kind, ours/paper pairs, Note."""
    cells = [row["Method"], row["Kind"] or MISSING]
    for group, _, _, kind in COLUMNS:
        ours = _fmt(row[f"{group} ours"], kind)
        if group.startswith("Memory") and "estimate" in row["memory_source"] and ours != MISSING:
            ours += " (est.)"
        cells += [ours, _fmt(row[f"{group} paper"], kind)]
    note = row["note"]
    cells.append(note if len(note) <= NOTE_CHARS else note[: NOTE_CHARS - 1] + "…")
    return cells


def _markdown(rows: list[dict], setting: list[str]) -> str:
    header = ["Method", "Kind", *(f"{g[0]} {side}" for g in COLUMNS for side in ("ours", "paper")), "Note"]
    align = ["---", "---", *(["---:"] * (2 * len(COLUMNS))), "---"]
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")
    lines = ["# Table 9 — transfer methods: ours vs paper", ""]
    for line in setting:
        lines += [f"**{line}**" if line == RANDOM_INIT_WARNING else line, ""]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in _cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "—": "---", "–": "--", "…": r"\ldots{}", "²": r"\textsuperscript{2}", "\n": " "}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def _latex(rows: list[dict], setting: list[str]) -> str:
    caption = " ".join(rf"\textbf{{{_tex(s)}}}" if s == RANDOM_INIT_WARNING else _tex(s) for s in setting)
    spec = "ll" + "rr" * len(COLUMNS) + "l"
    groups = " & ".join(rf"\multicolumn{{2}}{{c}}{{{_tex(g[0])}}}" for g in COLUMNS)
    lines = [
        r"% Generated by reports/table9.py; needs \usepackage{graphicx} (for \resizebox)",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{Transfer methods: ours vs paper. {caption}}}",
        r"\label{tab:table9}",
        r"\resizebox{\textwidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\hline",
        rf" & & {groups} & \\",
        "Method & Kind & " + " & ".join(["ours & paper"] * len(COLUMNS)) + r" & Note \\",
        r"\hline",
        *(" & ".join(_tex(c) for c in _cells(row)) + r" \\" for row in rows),
        r"\hline",
        r"\end{tabular}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def render(results_csv, out_dir, paper=None, *, include_missing: bool = False) -> list[Path]:
    """Write ``table9.md``, ``table9.tex`` and ``table9.csv`` into ``out_dir``; return their paths.

    ``paper``: the paper table (``None`` = committed copy, a CSV path, or a DataFrame).
    """
    results = _read_results(results_csv)
    rows = _rows(results, _paper_frame(paper), include_missing)
    setting = _setting(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["Method", "Kind", "method", "status", "runs", "note", "memory_source",
               *(f"{g[0]} {side}" for g in COLUMNS for side in ("ours", "paper"))]
    return [
        atomic_write(out_dir / "table9.md", _markdown(rows, setting)),
        atomic_write(out_dir / "table9.tex", _latex(rows, setting)),
        atomic_write(out_dir / "table9.csv",
                          pd.DataFrame(rows, columns=columns).to_csv(index=False, lineterminator="\n")),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.tables.table9", description=__doc__.splitlines()[0])
    parser.add_argument("results_csv", help="results.csv written by bench.ledger")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--paper", help="paper table CSV (default: the committed copy)")
    parser.add_argument("--include-missing", action="store_true", help="also list paper methods we did not run")
    args = parser.parse_args(argv)
    try:
        paths = render(args.results_csv, args.out, args.paper, include_missing=args.include_missing)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
