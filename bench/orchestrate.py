"""Running suites: plan every run a command asks for, execute each (recording a failure and
going on), retry after CUDA out-of-memory, record, then render the suite's tables and figures.

This is the library behind ``r2bench run`` (and ``python run_all.py``): the command line is
parsed in :mod:`r2bench.cli`, which calls :func:`run_command`.

Exit status of :func:`run_command`: 0 every run asked for is ok; 1 some run failed (or a table
could not be rendered); 2 bad command line or input, nothing ran; 130 interrupted (Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import logging
import signal
import time
import traceback
from pathlib import Path

import torch

from r2bench.bench import launch
from r2bench.bench.ledger import Ledger
from r2bench.bench.provenance import code_version
from r2bench.bench.resume import RESUME_NAME, peek_epoch
from r2bench.bench.train import NonFiniteLoss
from r2bench.core.io import atomic_write, cache_dir, clean_orphans
from r2bench.bench.run import RunContext, RunSpec, base_record, execute, make_run_id, run_identity
from r2bench.bench.suites import ALL, ALL_SUITES, SUITES, DatasetSuite, get_suite
from r2bench.bench.suites.datasets import bindings as dataset_bindings
from r2bench.reports.render import render
from r2bench.reports.tables.common import TableError
from r2bench.core.errors import InputError
from r2bench.datasets.registry import DATASETS, get_dataset, parse_overrides
from r2bench.methods.backbone import RANDOM_INIT, BackboneError, check_backbone
from r2bench.methods.registry import registered

log = logging.getLogger("r2bench.run")


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
        from r2bench.datasets.synthetic.tiny_clip import ensure_tiny_clip
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
    raise here, before anything runs. ``--methods`` may name registered methods that an
    extensible suite does not list: they join it as extra rows."""
    known = registered()
    unregistered = sorted(set(args.methods or []) - set(known) - {s.method for s in suite.runs})
    if unregistered:
        raise ValueError(f"--methods {' '.join(unregistered)}: no such method (registered: {', '.join(known)}; "
                         f"a method of your own: --plugin FILE)")
    suite = suite.with_methods(list(args.methods or []))
    train_overrides = {"epochs": args.epochs} if args.epochs is not None else {}
    from r2bench.bench.distributed import World
    world_size = World.current().size
    plan = []
    for spec in suite.runs:
        if args.methods and spec.method not in args.methods:
            continue
        if spec.method not in known:
            log.info("skip %s: method not in the registry (have %s)", spec.method, ", ".join(known))
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
    from r2bench.bench.distributed import World
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
        paths = render(out_dir, suite=suite, sources=figure_sources(args))
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


def figure_sources(args):
    """Where figures find what records only name: the command's weights, videos and annotations."""
    from r2bench.reports.figures.sources import Sources
    return Sources(tuple(w for w in [getattr(args, "weights", None)] if w), getattr(args, "video_dir", None),
                   getattr(args, "annotations", None))


def run_command(args) -> int:
    """Everything ``r2bench run`` does with its parsed ``args``: run the suite(s), then the
    report when asked. See the module docstring for the exit status."""
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
    names = list(ALL_SUITES) if args.suite == ALL else [args.suite] if args.suite else []
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
        from r2bench.reports.report import write_report
        try:
            html_path, md_path, results = write_report(args.out, suites=SUITES, sources=figure_sources(args))
        except InputError as e:
            log.error("error: %s", e)
            return 2
        log.info("report: %s, %s", html_path, md_path)
        codes += [1 for r in results if isinstance(r, tuple)]   # a suite the report could not render
    return max(codes, default=0)
