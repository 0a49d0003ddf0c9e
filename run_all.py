"""Run a suite: every run → the results ledger → the rendered table.

    python run_all.py --suite table9                      # built-in synthetic benchmark
    python run_all.py --suite table9 --paper-scale        # params + memory at the paper's setting, seconds
    python run_all.py --suite table9 --dataset qvhighlights --video-dir VIDEOS --weights ViT-B-32.pt
    python run_all.py --suite all                         # every suite, then out/report.html + report.md
    python run_all.py --report                            # only the report of everything under --out

Finished runs are skipped on a re-run (the ledger makes an interrupted suite resume, and an
interrupted run goes on from its last epoch checkpoint); a run that fails is recorded with
its reason and the suite goes on.

Exit status: 0 every run asked for is ok; 1 some run failed (or a table could not be
rendered); 2 bad command line or input, nothing ran; 130 interrupted (Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

if __name__ == "__main__":       # before torch starts its thread pools (bench.threads)
    from bench.threads import configure_early, threads_from_argv
    configure_early(threads_from_argv(sys.argv[1:]))

import torch

from bench import launch
from bench.ledger import Ledger
from bench.provenance import code_version
from bench.resume import RESUME_NAME, peek_epoch
from bench.train import NonFiniteLoss
from datasets.io import REPO_ROOT, atomic_write, cache_dir, clean_orphans
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
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads per process (default: the cores available; "
                                                "OMP_WAIT_POLICY=PASSIVE unless set; see docs/reliability.md)")
    p.add_argument("--oom-retry", action="store_true",
                   help="after CUDA out-of-memory, retry the run once with twice the gradient accumulation "
                        "(half the micro-batch, the same batch), recorded as such")
    p.add_argument("--run-id", nargs="+", help="only the runs with these ids (what a Slurm job runs)")
    launch.add_arguments(p)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "out")
    p.add_argument("--paper-scale", action="store_true",
                   help="only parameters and memory at the paper's setting (no data, weights or training)")
    p.add_argument("--fresh", action="store_true", help="re-run runs the ledger already has")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no library log lines")
    p.add_argument("--report", action="store_true",
                   help="write OUT/report.html and report.md (alone: from what --out holds, running nothing)")
    args = p.parse_args(argv)
    if args.suite is None and not args.report:
        args.suite = "table9"
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if there is one), ``cpu``, ``cuda`` or ``cuda:N``; anything else, or a CUDA
    device this machine lacks, is a ``ValueError`` saying so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: this suite runs on cpu or cuda, not {device.type}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available here (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_writable(folder: Path) -> None:
    """Fail now, with the folder named, if outputs cannot be written under ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = atomic_write(folder / ".write-probe", b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {folder}: cannot write there ({e.strerror or e})") from None


def _drop_library_chatter(record: logging.LogRecord) -> bool:
    """open_clip narrates model creation on the root logger at INFO: not our output."""
    return record.levelno >= logging.WARNING or "open_clip" not in record.pathname


def configure_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = logging.getLogger()
    if _drop_library_chatter not in root.filters:
        root.addFilter(_drop_library_chatter)
    if int(os.environ.get("RANK", "0")) != 0:     # the other processes of a torchrun run: warnings only
        root.setLevel(logging.WARNING)


class Interrupted(KeyboardInterrupt):
    """SIGTERM (a Slurm time limit, ``kill``) handled like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Interrupted(f"signal {signum}")


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
        return data, name, str(ensure_tiny_clip(progress=not args.quiet))
    if not args.video_dir:
        raise InputError(None, None, "video_dir", f"--dataset {args.dataset} needs --video-dir (a folder of <vid>.mp4 files)")
    check_backbone(args.backbone or "ViT-B-32", args.weights)
    data = spec.bind(args.annotations, args.video_dir).check()
    return data, args.backbone or "ViT-B-32", args.weights


def fault_of(e: BaseException, spec, ctx: RunContext) -> dict | None:
    """What a fault's record says beyond its message: the step and loss terms of a non-finite
    loss; the batch, micro-batch and peak memory of a CUDA out-of-memory."""
    if isinstance(e, NonFiniteLoss):
        return dict(kind="non_finite_loss", step=e.step, epoch=e.epoch, losses=e.losses)
    if isinstance(e, torch.cuda.OutOfMemoryError):
        cfg = run_identity(spec, ctx).get("train_config") or {}
        batch, accumulate = cfg.get("batch_size"), cfg.get("accumulate", 1)
        peak = total = None
        if ctx.device.type == "cuda" and torch.cuda.is_available():
            peak = round(torch.cuda.max_memory_allocated(ctx.device) / 2**30, 2)
            total = round(torch.cuda.get_device_properties(ctx.device).total_memory / 2**30, 1)
        return dict(kind="out_of_memory", batch_size=batch, accumulate=accumulate,
                    micro_batch=-(-batch // accumulate) if batch else None, peak_gib=peak, device_gib=total)
    return None


def run_or_record_failure(spec, ctx: RunContext, run_id: str, oom_retry: bool = False) -> dict:
    """The run's record; a run that raises becomes a ``failed`` record with its reason (and
    :func:`fault_of`). With ``oom_retry``, a CUDA out-of-memory is retried once with twice the
    micro-batches (``accumulate``), and the record says so (``oom_retry``)."""
    start = time.perf_counter()
    try:
        return execute(spec, ctx, run_id)
    except Exception as e:  # a failed run is recorded and the suite goes on
        fault = fault_of(e, spec, ctx)
        if oom_retry and fault and fault["kind"] == "out_of_memory" and fault["micro_batch"] and fault["micro_batch"] > 1:
            log.warning("run %s ran out of memory at micro-batch %d; retrying with gradient accumulation at half "
                        "that", run_id, fault["micro_batch"])
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(ctx.device) if ctx.device.type == "cuda" else None
            from dataclasses import replace
            retry = replace(ctx, train_overrides={**ctx.train_overrides, "accumulate": 2 * fault["accumulate"] // ctx.world_size})
            record = run_or_record_failure(spec, retry, run_id, oom_retry=False)
            record["oom_retry"] = dict(first=fault, accumulate=2 * fault["accumulate"],
                                       micro_batch=-(-fault["batch_size"] // (2 * fault["accumulate"])))
            return record
        log.error("run %s failed: %s", run_id, e)
        log.debug(traceback.format_exc())
        record = base_record(spec, ctx, run_id)
        record.update(status="failed", error=f"{type(e).__name__}: {e}", wall_s=round(time.perf_counter() - start, 1))
        if fault:
            record["fault"] = fault
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
    from bench.distributed import World
    world_size = World.current().size
    plan = []
    for spec in suite.runs:
        if args.methods and spec.method not in args.methods:
            continue
        if spec.method not in known:
            log.info("skip %s: method not in the registry yet (have %s)", spec.method, ", ".join(known))
            continue
        for seed in args.seeds:
            ctx = RunContext(suite.name, dataset, backbone, weights, device, out_dir, seed,
                             train_overrides=train_overrides, paper_scale=args.paper_scale, progress=not args.quiet,
                             fresh=args.fresh, world_size=world_size)
            plan.append((spec, ctx, make_run_id(suite.name, run_identity(spec, ctx))))
    if args.run_id:
        unknown = sorted(set(args.run_id) - {run_id for _, _, run_id in plan})
        if unknown:
            raise ValueError(f"--run-id {' '.join(unknown)}: not a run of this command (runs: "
                             f"{', '.join(run_id for _, _, run_id in plan)})")
        plan = [p for p in plan if p[2] in args.run_id]
    return plan


def main(argv=None) -> int:
    args = parse_args(argv)
    configure_logging(args.quiet)
    from bench.threads import apply
    apply(args.threads)
    try:
        device = resolve_device(args.device)
        if args.suite:          # --report alone reads --out and must not create it
            check_writable(args.out)
        launch.check_launcher(args)
    except ValueError as e:
        log.error("error: %s", e)
        return 2
    for root in (args.out, cache_dir()):
        clean_orphans(root)          # temp files and folders of writers that were killed
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    names = list(SUITES) if args.suite == ALL else [args.suite] if args.suite else []
    try:
        codes = [run_suite(get_suite(name), args, device) for name in names]
    except KeyboardInterrupt as e:
        log.error("interrupted (%s): every finished run is in the ledger; run the same command again to go on "
                  "(an interrupted run resumes from its last epoch checkpoint)", e or "Ctrl-C")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
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


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def interrupted_record(spec, ctx: RunContext, run_id: str, reason: BaseException) -> dict:
    record = base_record(spec, ctx, run_id)
    epoch = peek_epoch(ctx.out_dir / "runs" / run_id / RESUME_NAME)
    record.update(status="interrupted", error=f"interrupted ({reason or 'Ctrl-C'}); "
                  + (f"resumes from epoch {epoch}" if epoch else "starts over") + " when run again",
                  resume_epoch=epoch)
    return record


def run_suite(suite, args, device) -> int:
    """Run one suite's plan into ``<out>/<suite>``, then render its tables and figures."""
    # paper-scale rows (no training) get a folder of their own so they never mix with trained runs
    out_dir = args.out / (suite.name + ("_paper_scale" if args.paper_scale else ""))
    from bench.distributed import World
    world = World.current()
    if not world.main:
        world.barrier()          # under torchrun, rank 0 generates data and weights first
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
    finally:
        if world.main:
            world.barrier()
    if not world.main:           # the other processes of a torchrun run only train, in step with rank 0
        ledger = Ledger(out_dir)
        for spec, ctx, run_id in [p for p in plan if args.fresh or not ledger.done(p[2], code_version())]:
            execute(spec, ctx, run_id)
        return 0
    ledger = Ledger(out_dir)
    names = ", ".join(dict.fromkeys(d.name + (f"/{d.domain}" if getattr(d, "domain", None) else "")
                                    for d, _, _ in targets))
    log.info("suite %s on %s | backbone %s [%s] | device %s", suite.name, names, targets[0][1],
             targets[0][2] or RANDOM_INIT, device)
    version = code_version()
    todo = [(spec, ctx, run_id) for spec, ctx, run_id in plan if args.fresh or not ledger.done(run_id, version)]
    for _, _, run_id in plan:
        if not any(run_id == t[2] for t in todo):
            log.info("done already: %s (use --fresh to re-run)", run_id)
    outcome: dict[str, str] = {}      # run id -> how its attempt in this command ended
    if args.launcher != "inline" and todo:
        outcome = launch.submit_and_collect(todo, args, ledger)
    else:
        for spec, ctx, run_id in todo:
            log.info("── %s [%s] (seed %d)", spec.method, spec.row_name(), ctx.seed)
            try:
                record = run_or_record_failure(spec, ctx, run_id, oom_retry=args.oom_retry)
            except KeyboardInterrupt as e:
                ledger.append(interrupted_record(spec, ctx, run_id, e))
                ledger.write_results_csv()
                raise
            outcome[run_id] = record["status"]
            ledger.append(record)           # a failed attempt never replaces an ok record (Ledger.append)
            ledger.write_results_csv()      # results.csv stays current after every run
            if world.size > 1 and record["status"] != "ok":
                log.error("a failed run stops a torchrun group (its other processes may be waiting in a collective)")
                return 1
    results = ledger.write_results_csv()
    try:
        paths = suite.render(out_dir)
    except (TableError, InputError) as e:   # e.g. two configurations under one row name: refuse, say why
        log.error("suite %s: cannot render: %s", suite.name, e)
        return 1
    log.info("\n%s", paths[0].read_text())
    log.info("results: %s\ntables: %s", results, ", ".join(str(p) for p in paths))
    # a run failed if this command's attempt failed (even where the ledger keeps an earlier ok
    # record of it) or, not attempted now, if the ledger has no ok record of it
    status = {r["run_id"]: r.get("status") for r in ledger.records()}
    failed = [run_id for _, _, run_id in plan if outcome.get(run_id, status.get(run_id)) != "ok"]
    if failed:
        log.error("%d of %d runs did not finish ok: %s", len(failed), len(plan), ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
