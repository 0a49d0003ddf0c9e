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
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from r2bench.bench import jobs, launch
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
from r2bench.core.errors import InputError, describe_os_error
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
        data = spec.bind(args.annotations, args.video_dir, progress=not args.quiet,
                         follow_symlinks=getattr(args, "follow_symlinks", False))
        if args.weights or args.random_init or name != "R2Bench-Tiny":
            return data, name, args.weights
        from r2bench.datasets.synthetic.tiny_clip import ensure_tiny_clip
        return data, name, str(ensure_tiny_clip(progress=not args.quiet))
    if not args.video_dir:
        raise InputError(None, None, "video_dir", f"--dataset {args.dataset} needs --video-dir (a folder of <vid>.mp4 files)")
    check_backbone(args.backbone or "ViT-B-32", args.weights)
    data = spec.bind(args.annotations, args.video_dir, follow_symlinks=getattr(args, "follow_symlinks", False)).check()
    return data, args.backbone or "ViT-B-32", args.weights


def fault_of(e: BaseException, spec, ctx: RunContext) -> dict | None:
    """What a fault's record says beyond its message: the step and loss terms of a non-finite
    loss; for a CUDA out-of-memory, the step that failed (training, evaluation, the paper-setting
    measurement) with its real batch and micro-batch, and the peak memory."""
    if isinstance(e, NonFiniteLoss):
        return dict(kind="non_finite_loss", step=e.step, epoch=e.epoch, losses=e.losses)
    if isinstance(e, torch.cuda.OutOfMemoryError):
        from r2bench.bench import train as training
        cfg = run_identity(spec, ctx).get("train_config") or {}
        batch, accumulate = cfg.get("batch_size"), cfg.get("accumulate", 1)
        now = training.CURRENT
        peak = total = None
        if ctx.device.type == "cuda" and torch.cuda.is_available():
            peak = round(torch.cuda.max_memory_allocated(ctx.device) / 2**30, 2)
            total = round(torch.cuda.get_device_properties(ctx.device).total_memory / 2**30, 1)
        return dict(kind="out_of_memory", step=now.describe(), phase=now.phase, failed_batch=now.batch,
                    failed_micro_batch=now.micro_batch, batch_size=batch, accumulate=accumulate,
                    micro_batch=-(-batch // accumulate) if batch else None, peak_gib=peak, device_gib=total)
    return None


def run_or_record_failure(spec, ctx: RunContext, run_id: str, oom_retry: bool = True) -> dict:
    """The run's record; a run that raises becomes a ``failed`` record with its reason (and
    :func:`fault_of`). With ``oom_retry``, a CUDA out-of-memory while training is retried with
    twice the micro-batches (``accumulate``, the same batch) until it fits or the micro-batch
    is one sample, and the record lists every attempt (``oom_retry``)."""
    start = time.perf_counter()
    attempts = []
    while True:
        try:
            record = execute(spec, ctx, run_id)
            if attempts:
                record["oom_retry"] = attempts
            return record
        except Exception as e:  # a failed run is recorded and the suite goes on
            fault = fault_of(e, spec, ctx)
            if oom_retry and fault and fault["kind"] == "out_of_memory" and fault["phase"] == "train" \
                    and fault["micro_batch"] and fault["micro_batch"] > 1:
                accumulate = 2 * fault["accumulate"]
                log.warning("run %s ran out of memory in %s; retrying with %d micro-batches of up to %d", run_id,
                            fault["step"], accumulate, -(-fault["batch_size"] // accumulate))
                attempts.append(fault)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(ctx.device) if ctx.device.type == "cuda" else None
                ctx = replace(ctx, train_overrides={**ctx.train_overrides, "accumulate": accumulate // ctx.world_size},
                              fresh=True)
                continue
            message = describe_os_error(e, {"the output folder": ctx.out_dir}) if isinstance(e, OSError) else str(e)
            log.error("run %s failed: %s", run_id, message)
            log.debug(traceback.format_exc())
            record = base_record(spec, ctx, run_id)
            record.update(status="failed", error=f"{type(e).__name__}: {message}",
                          wall_s=round(time.perf_counter() - start, 1))
            if fault:
                record["fault"] = fault
            if attempts:
                record["oom_retry"] = attempts
            return record


def dataset_bindings_for(suite, args) -> list[tuple]:
    """(dataset, backbone, weights) of every dataset the command runs ``suite`` on."""
    if args.paper_scale:   # the paper's setting (QVHighlights, 0.5 fps); no data is read
        dataset = replace(get_dataset("qvhighlights"), name="paper-scale").bind()
        return [(dataset, "ViT-B-32", None)]
    if isinstance(suite, DatasetSuite):     # its real datasets (--data), else its stand-in; domains
        return [tuple(b) for b in dataset_bindings(suite, args)]
    if args.data or args.data_file:
        raise InputError("--data", None, "data", "--data/--data-file are for the dataset suites (table1-table4); "
                                                 "use --dataset NAME --video-dir DIR")
    return [dataset_and_backbone(args)]


def check_videos(dataset, args, suite) -> "VideoCheck | None":
    """Which videos of ``dataset`` the suite's runs need are there; a video path that would leave
    the video folder is refused now, naming its annotation line; missing videos are listed (and
    refused with ``--require-all-videos``)."""
    if args.paper_scale:
        return None
    splits = dict.fromkeys([dataset.train_split, dataset.eval_split,
                            *(s for spec in suite.runs for s in spec.predict_splits)])
    check = dataset.check_videos([s for s in splits if s in dataset.files])
    if check.missing:
        first = ", ".join(f"{vid} ({why})" for vid, why in list(check.missing.items())[:3])
        if getattr(args, "require_all_videos", False):
            raise InputError(dataset.video_dir, None, "vid", f"{len(check.missing)} video(s) named by the annotations "
                             f"are not in the video folder (--require-all-videos): {first}")
        log.warning("%s: %d of %d videos are missing; their queries are skipped (test split: empty predictions), "
                    "and every record and table says so: %s%s", dataset.name, len(check.missing),
                    len(check.missing) + len(check.found), first, ", ..." if len(check.missing) > 3 else "")
    return check


def plan_runs(suite, args, dataset, backbone, weights, device, out_dir,
              videos=None) -> list[tuple[RunSpec, RunContext, str]]:
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
                             fresh=args.fresh, world_size=world_size, memory=getattr(args, "memory", "auto"),
                             infer_timing=getattr(args, "infer_timing", "quick"),
                             curve_queries=getattr(args, "curve_queries", 128),
                             workers=getattr(args, "workers", None), videos=videos)
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


@dataclass
class SuitePlan:
    """One suite's runs, planned (and validated) before anything runs."""

    suite: object
    out_dir: Path
    targets: list
    runs: list = field(default_factory=list)       # (spec, ctx, run_id)


def plan_suite(suite, args, device) -> SuitePlan:
    """Bind the suite's datasets (generating the built-in ones), check their videos, and plan
    every run; raises on bad input before anything runs."""
    # paper-scale rows (no training) get a folder of their own so they never mix with trained runs
    out_dir = args.out / (suite.name + ("_paper_scale" if args.paper_scale else ""))
    from r2bench.bench.distributed import World
    world = World.current()
    if not world.main:
        world.barrier()          # under torchrun, rank 0 generates data and weights first
    try:
        targets = dataset_bindings_for(suite, args)
        plan = SuitePlan(suite, out_dir, targets)
        for dataset, backbone, weights in targets:
            videos = check_videos(dataset, args, suite)
            plan.runs += plan_runs(suite, args, dataset, backbone, weights, device, out_dir, videos)
    finally:
        if world.main:
            world.barrier()
    return plan


def execute_plan(plan: SuitePlan, args) -> dict[str, str]:
    """Run every planned run that is not verified done and not claimed by another process;
    returns ``{run_id: status}`` of what this command attempted. Waits, at the end, for the runs
    another process is training (so the table is complete)."""
    from r2bench.bench.distributed import World
    world = World.current()
    ledger, version = Ledger(plan.out_dir), code_version()
    if not world.main:           # the other processes of a torchrun run only train, in step with rank 0
        for spec, ctx, run_id in [p for p in plan.runs if args.fresh or not ledger.done(p[2], version)]:
            execute(spec, ctx, run_id)
        return {}
    if getattr(args, "experiment", None):
        write_experiment(plan.out_dir, args)
    names = ", ".join(dict.fromkeys(d.name + (f"/{d.domain}" if getattr(d, "domain", None) else "")
                                    for d, _, _ in plan.targets))
    log.info("suite %s on %s | backbone %s [%s] | device %s", plan.suite.name, names, plan.targets[0][1],
             plan.targets[0][2] or RANDOM_INIT, plan.runs[0][1].device if plan.runs else "-")
    todo = []
    for spec, ctx, run_id in plan.runs:
        why = None if args.fresh else ledger.verified(run_id, version)
        if not args.fresh and why is None:
            log.info("done already: %s (use --fresh to re-run)", run_id)
            continue
        if why and why not in ("not run yet",) and not why.startswith("its last attempt"):
            log.warning("run %s runs again: %s", run_id, why)
        todo.append((spec, ctx, run_id))
    outcome: dict[str, str] = {}      # run id -> how its attempt in this command ended
    if args.launcher != "inline" and todo:
        return launch.submit_and_collect(todo, args, ledger)
    n_jobs = jobs_for(args, todo, world)
    if n_jobs > 1:       # the runs no job was left for, and those another command holds, go on below
        todo = execute_in_jobs(plan, args, todo, n_jobs, ledger, outcome)
    elsewhere = []
    for spec, ctx, run_id in todo:
        status = run_claimed(spec, ctx, run_id, ledger, version, args)
        if status == ELSEWHERE:
            elsewhere.append(run_id)
            continue
        if status is not None:
            outcome[run_id] = status
        if world.size > 1 and status not in (None, "ok"):
            log.error("a failed run stops a torchrun group (its other processes may be waiting in a collective)")
            outcome["__stop__"] = "failed"
            return outcome
    for run_id in elsewhere:                # the other process's runs: wait until its claim is released
        waited = False
        while ledger.claimed_elsewhere(run_id):
            if not waited:
                log.info("waiting for %s, which another process is training", run_id)
                waited = True
            time.sleep(CLAIM_POLL_S)
    return outcome


ELSEWHERE = "elsewhere"              # another process holds the run's claim
DONE_MEANWHILE = "done-meanwhile"     # a job's answer for a run another process finished meanwhile


def run_claimed(spec, ctx: RunContext, run_id: str, ledger: Ledger, version: str, args,
                extra: dict | None = None) -> str | None:
    """Run ``run_id`` under its ledger claim and record it (``extra`` added to the record);
    returns its status, :data:`ELSEWHERE` when another process holds the claim, or None when
    another process finished it meanwhile."""
    with ledger.claim(run_id) as mine:
        if not mine:
            log.info("skip %s: another process is training it (its claim is held); waiting for it at the end", run_id)
            return ELSEWHERE
        if not args.fresh and ledger.verified(run_id, version) is None:   # finished by another process meanwhile
            log.info("done meanwhile by another process: %s", run_id)
            return None
        log.info("── %s [%s] (seed %d)", spec.method, spec.row_name(), ctx.seed)
        try:
            record = run_or_record_failure(spec, ctx, run_id, oom_retry=args.oom_retry)
        except KeyboardInterrupt as e:
            ledger.append({**interrupted_record(spec, ctx, run_id, e), **(extra or {})})
            ledger.write_results_csv()
            raise
        record.update(extra or {})
        ledger.append(record)           # a failed attempt never replaces an ok record (Ledger.append)
        ledger.write_results_csv()      # results.csv stays current after every run
        return record["status"]


# ---- runs side by side: --jobs N (bench.jobs manages the processes) -------------------------
def jobs_for(args, todo: list, world) -> int:
    """How many job processes run ``todo``: ``--jobs`` (``auto``: :func:`bench.jobs.auto_jobs`),
    never more than the runs, and one under torchrun or inside a job."""
    from r2bench.bench.threads import available_cores
    asked = getattr(args, "jobs", "1") or "1"
    if world.size > 1 or getattr(args, "serve_runs", None) is not None or len(todo) < 2:
        return 1
    if asked == "auto":
        return jobs.auto_jobs(todo[0][1].device.type, available_cores(), len(todo))
    return min(int(asked), len(todo))


def execute_in_jobs(plan: SuitePlan, args, todo: list, n: int, ledger: Ledger, outcome: dict) -> list:
    """Run ``todo`` in ``n`` job processes (:mod:`r2bench.bench.jobs`); fills ``outcome`` and
    returns what the caller still has to do inline: the runs no job was left to run, and those
    another command holds the claim of (the caller waits for them, as without jobs)."""
    from r2bench.bench.threads import available_cores
    threads = jobs.threads_per_job(available_cores(), n, args.threads)
    by_id = {run_id: (spec, ctx, run_id) for spec, ctx, run_id in todo}
    log.info("%d runs in %d processes side by side, %d thread(s) each (--jobs, --threads)", len(todo), n, threads)
    done, elsewhere = [0], []

    def on_answer(run_id: str, status: str) -> None:
        done[0] += 1
        if status == ELSEWHERE:
            elsewhere.append(run_id)
        elif status != DONE_MEANWHILE:
            outcome[run_id] = status
        log.info("%d of %d runs answered: %s %s", done[0], len(todo), run_id, status)

    def on_lost(run_id: str, code: int) -> None:
        spec, ctx, _ = by_id[run_id]
        if code == 130:                      # interrupted: the job recorded it
            return
        why = f"the job process running it {jobs.describe_exit(code)} before the run ended (its log is above)"
        log.error("run %s failed: %s", run_id, why)
        record = base_record(spec, ctx, run_id)
        record.update(status="failed", error=f"JobLost: {why}", jobs=n)
        ledger.append(record)
        ledger.write_results_csv()
        outcome[run_id] = "failed"

    commands = [jobs.job_command(list(args.argv), plan.suite.name, threads, i + 1, n) for i in range(n)]
    left = jobs.run_in_jobs([run_id for _, _, run_id in todo], commands,
                            jobs.job_environment(getattr(args, "memo_gb", None), n),
                            on_answer=on_answer, on_lost=on_lost)
    if left:
        log.warning("no job process is left; this process runs the %d remaining run(s)", len(left))
    return [by_id[run_id] for run_id in [*elsewhere, *left]]


def serve_runs(plan: SuitePlan, args) -> int:
    """A job process (``--serve-runs K/N``): run each run id read on standard input, answer
    ``<status> <run id>`` (:class:`bench.jobs.AnswerChannel`); exit when the input ends."""
    import sys
    channel = jobs.AnswerChannel()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"[job {args.serve_runs}] %(message)s"))
    ledger, version = Ledger(plan.out_dir), code_version()
    by_id = {run_id: (spec, ctx) for spec, ctx, run_id in plan.runs}
    for line in sys.stdin:
        run_id = line.strip()
        if not run_id:
            continue
        if run_id not in by_id:
            log.error("job %s: %s is not a run of this command", args.serve_runs, run_id)
            channel.answer(run_id, "failed")
            continue
        spec, ctx = by_id[run_id]
        status = run_claimed(spec, ctx, run_id, ledger, version, args, extra={"jobs": args.jobs_of})
        channel.answer(run_id, status or DONE_MEANWHILE)
    return 0


CLAIM_POLL_S = 5.0
EXPERIMENT_NAME = "experiment.json"


def write_experiment(out_dir: Path, args) -> Path:
    """``experiment.json`` beside the suite's ledger: the experiment file (``--config``), its values,
    and every setting the command resolved from it and the command line (the command line wins)."""
    import json
    keep = ("suite", "dataset", "size", "methods", "seeds", "epochs", "set", "backbone", "weights", "video_dir",
            "annotations", "data", "plugin", "memory", "infer_timing", "device")
    resolved = {k: getattr(args, k, None) for k in keep}
    return atomic_write(out_dir / EXPERIMENT_NAME, json.dumps(dict(experiment=args.experiment, resolved=resolved),
                                                              indent=1, default=str) + "\n")


def render_plan(plan: SuitePlan, args, outcome: dict[str, str]) -> int:
    """Render the suite's tables and figures; print its table on stdout; exit status 1 if a run of
    the plan did not finish ok (in this command's attempt, or in the ledger) or nothing could be rendered."""
    ledger = Ledger(plan.out_dir)
    results = ledger.write_results_csv()
    try:
        paths = render(plan.out_dir, suite=plan.suite, sources=figure_sources(args))
    except (TableError, InputError) as e:   # e.g. two configurations under one row name: refuse, say why
        log.error("suite %s: cannot render: %s", plan.suite.name, e)
        return 1
    print(paths[0].read_text(), flush=True)            # the table: the command's result, on stdout
    log.info("results: %s\ntables: %s", results, ", ".join(str(p) for p in paths))
    # a run failed if this command's attempt failed (even where the ledger keeps an earlier ok
    # record of it) or, not attempted now, if the ledger has no ok record of it
    status = {r["run_id"]: r.get("status") for r in ledger.records()}
    failed = [run_id for _, _, run_id in plan.runs if outcome.get(run_id, status.get(run_id)) != "ok"]
    if failed:
        log.error("%d of %d runs did not finish ok: %s", len(failed), len(plan.runs), ", ".join(failed))
    return 1 if failed or "__stop__" in outcome else 0


def run_suite(suite, args, device) -> int:
    """Plan, run and render one suite (what ``run_command`` does for each)."""
    try:
        plan = plan_suite(suite, args, device)
    except (InputError, BackboneError, ValueError, KeyError) as e:
        log.error("error: %s", e)
        return 2
    from r2bench.bench.distributed import World
    outcome = execute_plan(plan, args)
    return render_plan(plan, args, outcome) if World.current().main else 0


def figure_sources(args):
    """Where figures find what records only name: the command's weights, videos and annotations."""
    from r2bench.reports.figures.sources import Sources
    return Sources(tuple(w for w in [getattr(args, "weights", None)] if w), getattr(args, "video_dir", None),
                   getattr(args, "annotations", None))


def load_plugins(paths) -> list[str]:
    """Import ``--plugin`` files (their methods register themselves); a bad one is a ``ValueError``."""
    from r2bench.methods.registry import PluginError, load_plugin
    names = []
    for path in paths or []:
        try:
            added = load_plugin(path)
        except PluginError as e:
            raise ValueError(f"--plugin {e}") from None
        log.info("plugin %s: %s", path, ", ".join(added) or "registers no method")
        names += added
    return names


def validate(args) -> torch.device:
    """Every flag checked before anything runs (``ValueError`` naming it); returns the device."""
    load_plugins(getattr(args, "plugin", None))
    device = resolve_device(args.device)
    jobs_asked = getattr(args, "jobs", "1")
    if jobs_asked not in (None, "auto") and not (str(jobs_asked).isdigit() and int(jobs_asked) >= 1):
        raise ValueError(f"--jobs must be auto or a whole number of at least 1, got {jobs_asked!r}")
    if jobs_asked not in (None, "auto", "1") and device.type == "cuda":
        raise ValueError(f"--jobs {jobs_asked}: side-by-side runs are for the CPU; on a GPU one process trains "
                         f"at a time here (use --launcher for several GPUs)")
    for name in ("epochs", "threads", "workers", "curve_queries"):
        value = getattr(args, name, None)
        low = 0 if name in ("workers", "curve_queries") else 1
        if value is not None and value < low:
            raise ValueError(f"--{name} must be at least {low}, got {value}")
    bad = [s for s in args.seeds if not 0 <= s < 2**32]
    if bad:
        raise ValueError(f"--seeds {' '.join(map(str, bad))}: a seed is an integer from 0 to 2^32 - 1")
    if len(set(args.seeds)) != len(args.seeds):
        twice = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
        log.warning("--seeds: %s given more than once; each seed runs once", ", ".join(map(str, twice)))
        args.seeds = list(dict.fromkeys(args.seeds))
    if getattr(args, "memo_gb", None) is not None:
        from r2bench.core.memo import memo_budget
        memo_budget(args.memo_gb)
        import os
        os.environ["R2BENCH_MEMO_GB"] = str(args.memo_gb)
    parse_overrides(args.set)             # every --set key and value (types and ranges) now
    if args.suite:          # --report alone reads --out and must not create it
        check_writable(args.out)
    launch.check_launcher(args)
    return device


def run_command(args) -> int:
    """Everything ``r2bench run`` does with its parsed ``args``: check every setting, plan every
    suite asked for (binding data, checking videos), only then clean up what killed writers left
    and run, then render; the report when asked. See the module docstring for the exit status."""
    try:
        device = validate(args)
        names = list(ALL_SUITES) if args.suite == ALL else [args.suite] if args.suite else []
        plans = [plan_suite(get_suite(name), args, device) for name in names]
    except (InputError, BackboneError, ValueError, KeyError) as e:  # nothing has run yet: say what is wrong, stop
        log.error("error: %s", e.args[0] if isinstance(e, KeyError) and e.args else e)
        return 2
    if getattr(args, "serve_runs", None) is not None:      # a job process of --jobs N (bench.jobs)
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return serve_runs(plans[0], args)
        except KeyboardInterrupt:
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
    from r2bench.bench.distributed import World
    if plans and World.current().main:
        for root in (args.out, cache_dir()):
            clean_orphans(root)          # temp files and folders of this machine's writers that were killed
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    codes = []
    try:
        for plan in plans:
            outcome = execute_plan(plan, args)
            codes.append(render_plan(plan, args, outcome) if World.current().main else 0)
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
