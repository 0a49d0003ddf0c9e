"""Run a suite: every run → the results ledger → the rendered table.

    python run_all.py --suite table9                      # built-in synthetic benchmark
    python run_all.py --suite table9 --paper-scale        # params + memory at the paper's setting, seconds
    python run_all.py --suite table9 --dataset qvhighlights --video-dir VIDEOS --weights ViT-B-32.pt
    python run_all.py --suite all                         # every suite, then out/report.html + report.md
    python run_all.py --report                            # only the report of everything under --out

Finished runs are skipped on a re-run (the ledger makes an interrupted suite resume); a run
that fails is recorded with its reason and the suite goes on.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

import torch

from bench.ledger import Ledger
from bench.provenance import code_version
from datasets.io import REPO_ROOT
from bench.run import RunContext, RunSpec, base_record, execute, make_run_id, run_identity
from bench.suites import ALL, SUITES, DatasetSuite, get_suite
from bench.suites.datasets import bindings as dataset_bindings
from reports.tables.common import TableError
from datasets.errors import InputError
from datasets.registry import DATASETS, get_dataset, parse_overrides
from methods.backbone import RANDOM_INIT, BackboneError, check_backbone
from methods.registry import registered

log = logging.getLogger("run_all")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=[*sorted(SUITES), ALL],
                   help="the suite to run (default table9; 'all': every suite, then the report)")
    p.add_argument("--dataset", default="synthetic", choices=sorted(DATASETS))
    p.add_argument("--video-dir", help="folder of <vid>.mp4 files (real datasets)")
    p.add_argument("--data", action="append", metavar="NAME=VIDEO_DIR",
                   help="dataset suites (table1-table4): a real dataset and its video folder; repeatable")
    p.add_argument("--data-file", help="dataset suites: a TOML file, one [NAME] table per dataset with "
                                       "video_dir and optional annotations")
    p.add_argument("--annotations", help="folder of the dataset's annotation JSONL files "
                                         "(default: ../shared/data/annotations/<dataset>)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override the dataset's preset, e.g. train.lr=1e-4 head.dropout=0.3")
    p.add_argument("--backbone", help="open_clip model name (default: R2Bench-Tiny on synthetic, else ViT-B-32)")
    p.add_argument("--weights", help="local CLIP checkpoint file (default on synthetic: the project's tiny CLIP)")
    p.add_argument("--random-init", action="store_true", help="use a randomly initialised backbone")
    p.add_argument("--size", choices=["small", "default", "large"],
                   help="size of the built-in benchmark (videos, queries and its training preset; "
                        "docs/benchmark.md); only for generated datasets")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--methods", nargs="+", help="only these rows of the suite")
    p.add_argument("--epochs", type=int, help="override the dataset preset's epochs")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "out")
    p.add_argument("--paper-scale", action="store_true",
                   help="only parameters and memory at the paper's setting (no data, weights or training)")
    p.add_argument("--fresh", action="store_true", help="re-run runs the ledger already has")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--report", action="store_true",
                   help="write OUT/report.html and report.md (alone: from what --out holds, running nothing)")
    args = p.parse_args(argv)
    if args.suite is None and not args.report:
        args.suite = "table9"
    return args


def dataset_and_backbone(args):
    """The bound dataset (registry spec, preset overrides applied) and (backbone name, weights path)."""
    spec = get_dataset(args.dataset)
    if args.size:
        try:
            spec = spec.with_size(args.size)
        except ValueError as e:
            raise InputError(None, None, "size", str(e)) from None
    spec = spec.with_overrides(parse_overrides(args.set))
    if spec.materialize is not None:      # the built-in benchmark: generated on first use
        name = args.backbone or "R2Bench-Tiny"
        check_backbone(name, args.weights)
        data = spec.bind(args.annotations, args.video_dir, progress=not args.quiet)
        if args.weights or args.random_init or name != "R2Bench-Tiny":
            return data, name, args.weights
        from datasets.synthetic.tiny_clip import ensure_tiny_clip
        return data, name, str(ensure_tiny_clip())
    if not args.video_dir:
        raise InputError(None, None, "video_dir", f"--dataset {args.dataset} needs --video-dir (a folder of <vid>.mp4 files)")
    check_backbone(args.backbone or "ViT-B-32", args.weights)
    data = spec.bind(args.annotations, args.video_dir).check()
    return data, args.backbone or "ViT-B-32", args.weights


def run_or_record_failure(spec, ctx: RunContext, run_id: str) -> dict:
    """The run's record; a run that raises becomes a ``failed`` record with its reason."""
    start = time.perf_counter()
    try:
        return execute(spec, ctx, run_id)
    except Exception as e:  # a failed run is recorded and the suite goes on
        log.error("run %s failed: %s", run_id, e)
        log.debug(traceback.format_exc())
        record = base_record(spec, ctx, run_id)
        record.update(status="failed", error=f"{type(e).__name__}: {e}", wall_s=round(time.perf_counter() - start, 1))
        return record


def plan_runs(suite, args, dataset, backbone, weights, device, out_dir) -> list[tuple[RunSpec, RunContext, str]]:
    """Every (spec, context, run id) the command asks for; unknown methods and bad settings
    raise here, before anything runs."""
    known = registered()
    wanted = [s.method for s in suite.runs]
    unknown = sorted(set(args.methods or []) - set(wanted))
    if unknown:
        raise ValueError(f"--methods {' '.join(unknown)}: not a row of suite {suite.name} (rows: {', '.join(wanted)})")
    train_overrides = {"epochs": args.epochs} if args.epochs is not None else {}
    plan = []
    for spec in suite.runs:
        if args.methods and spec.method not in args.methods:
            continue
        if spec.method not in known:
            log.info("skip %s: method not in the registry yet (have %s)", spec.method, ", ".join(known))
            continue
        for seed in args.seeds:
            ctx = RunContext(suite.name, dataset, backbone, weights, device, out_dir, seed,
                             train_overrides=train_overrides, paper_scale=args.paper_scale, progress=not args.quiet)
            plan.append((spec, ctx, make_run_id(suite.name, run_identity(spec, ctx))))
    return plan


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    names = list(SUITES) if args.suite == ALL else [args.suite] if args.suite else []
    codes = [run_suite(get_suite(name), args, device) for name in names]
    if args.report or args.suite == ALL:
        from reports.report import write_report
        try:
            html_path, md_path, results = write_report(args.out)
        except InputError as e:
            log.error("error: %s", e)
            return 2
        log.info("report: %s, %s", html_path, md_path)
        codes += [1 for r in results if isinstance(r, tuple)]   # a suite the report could not render
    return max(codes, default=0)


def run_suite(suite, args, device) -> int:
    """Run one suite's plan into ``<out>/<suite>``, then render its tables and figures."""
    # paper-scale rows (no training) get a folder of their own so they never mix with trained runs
    out_dir = args.out / (suite.name + ("_paper_scale" if args.paper_scale else ""))
    try:
        if args.paper_scale:   # the paper's setting (QVHighlights, 0.5 fps); no data is read
            from dataclasses import replace
            dataset = replace(get_dataset("qvhighlights"), name="paper-scale").bind()
            backbone, weights = "ViT-B-32", None
            targets = [(dataset, backbone, weights)]
        elif isinstance(suite, DatasetSuite):     # its real datasets (--data), else its stand-in; domains
            targets = dataset_bindings(suite, args)
        else:
            if args.data or args.data_file:
                raise InputError("--data", None, "data", f"--data/--data-file are for the dataset suites "
                                                         f"(table1-table4); use --dataset NAME --video-dir DIR")
            targets = [dataset_and_backbone(args)]
        plan = [p for dataset, backbone, weights in targets
                for p in plan_runs(suite, args, dataset, backbone, weights, device, out_dir)]
    except (InputError, BackboneError, ValueError, KeyError) as e:  # nothing has run yet: say what is wrong, stop
        log.error("error: %s", e)
        return 2
    ledger = Ledger(out_dir)
    names = ", ".join(dict.fromkeys(d.name + (f"/{d.domain}" if getattr(d, "domain", None) else "")
                                    for d, _, _ in targets))
    log.info("suite %s on %s | backbone %s [%s] | device %s", suite.name, names, targets[0][1],
             targets[0][2] or RANDOM_INIT, device)
    version = code_version()
    for spec, ctx, run_id in plan:
        if ledger.done(run_id, version) and not args.fresh:
            log.info("done already: %s (use --fresh to re-run)", run_id)
            continue
        log.info("── %s [%s] (seed %d)", spec.method, spec.row_name(), ctx.seed)
        record = run_or_record_failure(spec, ctx, run_id)
        ledger.append(record)
        ledger.write_results_csv()      # results.csv stays current after every run
    results = ledger.write_results_csv()
    try:
        paths = suite.render(out_dir)
    except (TableError, InputError) as e:   # e.g. two configurations under one row name: refuse, say why
        log.error("suite %s: cannot render: %s", suite.name, e)
        return 1
    log.info("\n%s", paths[0].read_text())
    log.info("results: %s\ntables: %s", results, ", ".join(str(p) for p in paths))
    failed = [r for r in ledger.records() if r["status"] != "ok"]
    return 1 if failed and len(failed) == len(ledger.records()) else 0


if __name__ == "__main__":
    sys.exit(main())
