"""Paper Tables 1–4 (the dataset tables): our R²-Tuning row beside every published row.

Each table lists the paper's rows in the paper's order (their numbers in the *paper* columns,
ours "–" since we do not run those methods) and our R²-Tuning runs in the *ours* columns of
the R²-Tuning row, one column group per dataset:

* ``table1``: QVHighlights. **Our numbers are on val, the paper's on test** (the test labels
  are withheld; ``hl_test_submission.jsonl``, written next to the table, is what the official
  server scores);
* ``table2``: Ego4D-NLQ, Charades-STA, TACoS (R1@0.3/0.5/0.7, mIoU);
* ``table3``: YouTube Highlights mAP per domain and their average;
* ``table4``: TVSum Top-5 mAP per domain and their average.

Runs on a synthetic stand-in (``datasets.registry``: ``synthetic``, ``synthetic_mr``,
``synthetic_hd_binary``, ``synthetic_hd_graded``) fill a column group of their own, labelled
*stand-in*, with no paper numbers beside them: same task and metric, another domain. Real
datasets not run yet are labelled with the command that fills them.

One model per domain (Tables 3, 4): the runs of one row and seed, one per domain, are merged
into one record before tabulating (:func:`merge_domains`): its per-query file holds every
video's AP in its domain's column, and ``mAP`` (the average over domains) only when every
domain of the dataset has a run — otherwise the table says which are missing.

The suites declare these tables (``r2bench.bench.suites.datasets``: :class:`DatasetTable`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from r2bench.core.errors import InputError
from r2bench.core.io import atomic_write
from r2bench.reports import records as rec
from r2bench.reports.paper import paper_table
from r2bench.reports.tables.common import (MISSING, Column, Layout, Row, RowResult, Table, TableSpec, build_table)

STAND_IN_GROUP = "Stand-in"
REFERENCE_WHY = ("the only row we run: the other rows are the paper's published numbers, so no row is "
                 "compared with it (no marks).")
STAND_IN_NOTE = ("Stand-in columns: a synthetic dataset of the same task ({what}), scored with the same metric; "
                 "another domain, so not comparable with the paper's numbers.")
VAL_ONLY_NOTE = ("EaTR and UnLoc: the paper's caption says they reported val-split numbers only; the other "
                 "published rows are on test.")
SUBMISSION_KEYS = ("qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores")


def fill_command(suite: str, dataset: str) -> str:
    """The command that runs ``suite`` on real ``dataset`` into the same ``--out``."""
    return (f"python run_all.py --suite {suite} --data {dataset}=VIDEO_DIR --weights ViT-B-32.pt "
            f"[--annotations FOLDER] --out OUT")


# --------------------------------------------------------------------------- columns per table

def _t1_columns(group: str, paper: bool) -> tuple[Column, ...]:
    p = (lambda name: name) if paper else (lambda name: None)
    return (
        Column("MR R1@0.5", "MR-full-R1@0.5", p("MR-R1@0.5"), group=group),
        Column("MR R1@0.7", "MR-full-R1@0.7", p("MR-R1@0.7"), group=group),
        Column("MR mAP@0.5", "MR-full-mAP@0.5", p("MR-mAP@0.5"), group=group),
        Column("MR mAP@0.75", "MR-full-mAP@0.75", p("MR-mAP@0.75"), group=group),
        Column("MR mAP", "MR-full-mAP", p("MR-mAP"), group=group),
        Column("HD mAP", "HL-min-VeryGood-mAP", p("HD-VeryGood-mAP"), group=group),
        Column("HD HIT@1", "HL-min-VeryGood-Hit1", p("HD-VeryGood-HIT@1"), group=group),
        Column("#Params (M)", "params_M", p("params_M"), kind="size", group=group),
    )


def _t2_columns(group: str, paper_prefix: str | None) -> tuple[Column, ...]:
    p = (lambda k: f"{paper_prefix}-{k}") if paper_prefix else (lambda k: None)
    return tuple(Column(label, key, p(paper), group=group) for label, key, paper in (
        ("R1@0.3", "MR-full-R1@0.3", "R1@0.3"), ("R1@0.5", "MR-full-R1@0.5", "R1@0.5"),
        ("R1@0.7", "MR-full-R1@0.7", "R1@0.7"), ("mIoU", "MR-full-mIoU", "mIoU")))


def _domain_columns(group: str, prefix: str, domains: tuple[str, ...], paper_names: tuple[str, ...] | None,
                    digits: int = 1) -> tuple[Column, ...]:
    names = paper_names or (None,) * len(domains)
    return (*(Column(paper or domain, f"{prefix}-{domain}", paper, group=group, digits=digits)
              for domain, paper in zip(domains, names)),
            Column("Avg", prefix, "Avg" if paper_names else None, group=group, digits=digits))


def domains_of(dataset: str) -> tuple[str, ...]:
    """The domains of a registered dataset (YouTube Highlights, TVSum and their stand-ins)."""
    from r2bench.datasets.registry import get_dataset
    return get_dataset(dataset).domains


_domains = domains_of


TABLE2_GROUPS = {"ego4d_nlq": ("Ego4D-NLQ", "Ego4D"), "charades_sta": ("Charades-STA", "Charades"),
                 "tacos": ("TACoS", "TACoS")}
YOUTUBE_PAPER = ("Dog", "Gymnastics", "Parkour", "Skating", "Skiing", "Surfing")


def _paper_text(res: RowResult, column: str) -> str:
    if res.paper is None or column not in res.paper.index:
        return ""
    value = res.paper[column]
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)



def qvhighlights_columns(group: str, paper: bool, split: str | None = None) -> tuple[Column, ...]:
    """Table 1's columns (MR R1, mAP@0.5/0.75/avg, HD mAP and HIT@1, params); ``split``: the
    metrics of that predicted split (``test:MR-full-mAP`` …: the test split scored with its
    released ground truth), without the params column."""
    columns = _t1_columns(group, paper)
    if split is None:
        return columns
    return tuple(replace(c, key=f"{split}:{c.key}") for c in columns if c.kind == "metric")


def moment_retrieval_columns(group: str, paper_prefix: str | None) -> tuple[Column, ...]:
    """Table 2's columns of one dataset (R1@0.3/0.5/0.7, mIoU), paper columns ``<prefix>-R1@0.3`` …"""
    return _t2_columns(group, paper_prefix)


def domain_columns(group: str, prefix: str, dataset: str, paper_names: tuple[str, ...] | None) -> tuple[Column, ...]:
    """Tables 3 and 4: one column per domain of ``dataset`` (``<prefix>-<domain>``) and their average."""
    return _domain_columns(group, prefix, _domains(dataset), paper_names)


def paper_frame(paper_table_name: str) -> pd.DataFrame:
    """The paper's table (committed copy); Table 1's empty ``post_pretrain`` cells read as ""."""
    frame = paper_table(paper_table_name)
    if "post_pretrain" in frame.columns:
        frame["post_pretrain"] = frame["post_pretrain"].fillna("").astype(str)
    return frame


def paper_rows(paper_table_name: str, ours: dict[str, Row]) -> tuple[Row, ...]:
    """Every row of the paper's table, in its order, named uniquely (Table 1 repeats methods
    with post pre-training: ``Moment-DETR (PT: 236K ASR Cap.)``); a paper row that one of
    ``ours`` matches (by its paper match) takes our row's name."""
    frame = paper_frame(paper_table_name)
    rows = []
    for _, r in frame.iterrows():
        match = {"method": str(r["method"])}
        name = str(r["method"])
        if "post_pretrain" in frame.columns:
            match["post_pretrain"] = str(r["post_pretrain"])
            if r["post_pretrain"]:
                name = f"{name} (PT: {r['post_pretrain']})"
        mine = next((row for row in ours.values() if row.paper and all(str(match.get(k)) == str(v)
                                                                           for k, v in row.paper.items())), None)
        rows.append(Row(mine.name, match) if mine else Row(name, match))
    return tuple(rows)


def paper_info(column: str, ours_default: str = "") -> tuple[str, object]:
    """An extra text column holding the paper table's ``column`` (``ours_default`` on our rows without one)."""
    return lambda res: _paper_text(res, column) or (ours_default if res.records else "")


@dataclass(frozen=True)
class DatasetTable(TableSpec):
    """A dataset table's declaration (paper Tables 1–4): the real datasets it reports
    (``targets``, their column groups in ``roles``), the synthetic ``stand_in`` that runs when
    none is given (its columns ``stand_in_columns``, described by ``stand_in_what``), and whether
    test-split submission files are written beside it. Every row of the paper's table is shown,
    in the paper's order; ours fill the row their paper match names."""

    targets: tuple[str, ...] = ()
    stand_in: str | None = None
    stand_in_columns: tuple[Column, ...] = ()
    stand_in_what: str = ""
    submissions: bool = False
    val_only_note: bool = False

    def layout(self, suite: str, rows: tuple[Row, ...], reference: str, stand_in: bool = False) -> Layout:
        ours = {r.name: r for r in rows}
        columns, roles, notes = self.columns, dict(self.roles), tuple(self.notes)
        if stand_in and self.stand_in:
            columns += self.stand_in_columns
            roles[STAND_IN_GROUP] = (self.stand_in,)
            notes += (STAND_IN_NOTE.format(what=self.stand_in_what),)
        return Layout(suite=suite, title=self.title, rows=paper_rows(self.paper_table, ours), columns=columns,
                      reference=reference, reference_why=self.reference_why, paper_table=self.paper_table,
                      paper_setting=self.paper_setting, roles=roles, info=self.info, notes=notes)

    def build(self, records: list[dict], layout: Layout, out_dir: Path) -> list[Table]:
        return [build(self, layout, records, out_dir)]

    def files(self, records: list[dict], out_dir: Path) -> list[Path]:
        return write_submissions(records, out_dir) if self.submissions else []


# --------------------------------------------------------------------------- one model per domain

def _identity_without_domain(record: dict) -> str:
    keep = {k: record.get(k) for k in ("method", "config", "train_config", "dataset", "backbone", "weights",
                                       "protocol", "row")}
    if isinstance(keep.get("train_config"), dict):
        keep["train_config"] = {k: v for k, v in keep["train_config"].items() if k != "seed"}
    return json.dumps(keep, sort_keys=True, default=str)


def merge_domains(records: list[dict], out_dir: str | Path) -> tuple[list[dict], list[str]]:
    """Records with the per-domain runs of one row, seed and configuration merged into one
    record (written per-query file under ``out_dir/per_domain/``), and notes on incomplete sets.

    The merged ``metrics`` hold every domain's value and the headline (``mAP`` / ``Top5-mAP``:
    the mean over domains) only when every domain of the dataset has a run. Its per-query file
    has one row per video: the video's AP in its domain's column, and in the headline column its
    share of the mean over domains (AP × N / (D × n_domain)), so that each column's mean is the
    table's value. Runs without a domain pass through unchanged, as do failed runs."""
    out_dir = Path(out_dir)
    passthrough, groups = [], {}
    for r in records:
        if r.get("domain") and r.get("status") == "ok":
            groups.setdefault((_identity_without_domain(r), r.get("seed")), []).append(r)
        else:
            passthrough.append(r)
    merged, notes = [], []
    for (_, seed), runs in groups.items():
        runs = sorted(runs, key=lambda r: str(r["domain"]))
        first = runs[0]
        dataset = str(first.get("dataset"))
        try:
            all_domains = _domains(dataset)
        except KeyError:
            all_domains = ()
        domains = [d for d in all_domains if any(r["domain"] == d for r in runs)] + \
            sorted({r["domain"] for r in runs} - set(all_domains))
        headline = _headline_key(first)
        frames = []
        for r in runs:
            frame = rec.per_query(r)
            if frame is None:
                frames = None
                break
            frames.append(frame[[c for c in frame.columns if c != headline]])
        metrics = {}
        for r in runs:
            metrics.update({k: v for k, v in (r.get("metrics") or {}).items() if k != headline})
        complete = bool(all_domains) and set(all_domains) <= {r["domain"] for r in runs}
        per_query_path = None
        if frames is not None:
            table = pd.concat(frames)
            if complete and headline:
                values = pd.Series(index=table.index, dtype=float)
                for d in domains:
                    column = table[f"{headline}-{d}"]
                    values[column.notna()] = column[column.notna()] * len(table) / (len(domains) * column.notna().sum())
                table[headline] = values
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{first.get('row')}-{dataset}-s{seed}")
            per_query_path = atomic_write(out_dir / "per_domain" / f"{safe}.csv", table.to_csv())
        if complete and headline:
            metrics[headline] = round(sum(float(metrics[f"{headline}-{d}"]) for d in domains) / len(domains), 2)
        elif headline:
            missing = [d for d in all_domains if d not in domains]
            notes.append(f"{first.get('row')} on {dataset} (seed {seed}): {headline} average not shown — "
                         f"{len(domains)} of {len(all_domains)} domains run (missing: {', '.join(missing)}).")
        record = {k: v for k, v in first.items() if k not in ("per_query", "predictions", "split_predictions")}
        record.update(
            run_id="+".join(r["run_id"] for r in runs), domain=None, domains=domains, metrics=metrics,
            dataset_version="+".join(sorted(str(r.get("dataset_version")) for r in runs)),
            code_version="+".join(sorted({str(r.get("code_version")) for r in runs})),
            per_query=str(per_query_path) if per_query_path else None,
            n_eval=sum(int(r.get("n_eval") or 0) for r in runs), n_train=sum(int(r.get("n_train") or 0) for r in runs),
            wall_s=sum(float(r.get("wall_s") or 0) for r in runs))
        merged.append(record)
    return passthrough + merged, notes


def _headline_key(record: dict) -> str | None:
    """``Top5-mAP`` (TVSum) or ``mAP`` (YouTube Highlights): the per-domain metrics' average."""
    keys = record.get("metrics") or {}
    return next((k for k in ("Top5-mAP", "mAP") if k in keys), None)


# --------------------------------------------------------------------------- tables

def build(spec: DatasetTable, layout: Layout, records: list[dict], out_dir: str | Path | None = None,
          paper=None) -> Table:
    """The table of ``spec`` from its ledger records (per-domain runs merged first; their per-query
    files go to ``out_dir``, default the records' suite folder). ``layout`` (the suite's) gives the
    suite name and our rows; the stand-in columns are added when stand-in runs exist."""
    if out_dir is None:
        out_dir = Path(records[0]["_suite_dir"]) if records and records[0].get("_suite_dir") else Path(".")
    records, notes = merge_domains(records, out_dir)
    stand_in = any(r.get("dataset") == spec.stand_in for r in records)
    ours = tuple(r for r in layout.rows if r.name == layout.reference)
    lay = spec.layout(layout.suite, ours, layout.reference, stand_in=stand_in)
    run = {r.get("dataset") for r in records if r.get("status") == "ok"}
    extra = [f"Not run on {d}: {fill_command(layout.suite, d)}" for d in spec.targets if d not in run]
    if spec.submissions:
        extra.append("Test-split predictions: hl_test_submission.jsonl (and hl_val_submission.jsonl, and "
                     "submission.zip for the evaluation server) beside this table, in the official format, from "
                     "the lowest-seed run.")
    lay = replace(lay, notes=lay.notes + tuple(notes) + tuple(extra))
    table = build_table(records, lay, paper_frame(spec.paper_table) if paper is None else paper)
    for res in table.rows:          # the paper's other methods: published numbers only, nothing of ours to run
        if res.name != layout.reference and not res.records:
            for cell in res.cells.values():
                cell.text = MISSING
            res.notes = ["published only"]
    return table


def write_submissions(records: list[dict], out_dir: str | Path) -> list[Path]:
    """Table 1: the lowest-seed ok run's test and val predictions per dataset, in the official
    submission format (one JSON line per query, keys :data:`SUBMISSION_KEYS`), as
    ``hl_test_submission.jsonl`` / ``hl_val_submission.jsonl`` (QVHighlights) or
    ``<dataset>_hl_{test,val}_submission.jsonl`` (a stand-in)."""
    out_dir, written = Path(out_dir), []
    ok = [r for r in records if r.get("status") == "ok" and (r.get("split_predictions") or {}).get("test")]
    for dataset in dict.fromkeys(r.get("dataset") for r in ok):
        run = min((r for r in ok if r.get("dataset") == dataset), key=lambda r: r.get("seed") or 0)
        prefix = "" if dataset == "qvhighlights" else f"{dataset}_"
        for split, value in (("test", run["split_predictions"]["test"]), ("val", run.get("predictions"))):
            path = rec.resolve(run, value)
            if path is None or not path.is_file():
                continue
            lines = []
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                obj = json.loads(line)
                missing = [k for k in SUBMISSION_KEYS if k not in obj]
                if missing:
                    raise InputError(path, n, missing[0], "prediction line lacks a submission field")
                lines.append(json.dumps({k: obj[k] for k in SUBMISSION_KEYS}))
            written.append(atomic_write(out_dir / f"{prefix}hl_{split}_submission.jsonl",
                                        "".join(s + "\n" for s in lines)))
        pair = [p for p in written if p.name in (f"{prefix}hl_val_submission.jsonl", f"{prefix}hl_test_submission.jsonl")]
        if len(pair) == 2:
            written.append(atomic_write(out_dir / f"{prefix}submission.zip", submission_zip(pair)))
    return written


def submission_zip(files: list[Path]) -> bytes:
    """The archive the QVHighlights evaluation server took: ``hl_val_submission.jsonl`` and
    ``hl_test_submission.jsonl`` at its root (deflated, fixed timestamps: the same files give the
    same bytes)."""
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted(files, key=lambda p: p.name):
            info = zipfile.ZipInfo(path.name[path.name.index("hl_"):], date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes())
    return buffer.getvalue()
