"""``r2bench``: the one command line of R²-Bench (also ``python -m r2bench``).

    r2bench run --suite table9                 # a suite on the built-in benchmark (python run_all.py is the same)
    r2bench prepare --dataset qvhighlights ... # cache the features of a real video folder
    r2bench evaluate --dataset NAME GT PRED    # score a prediction file with the official metrics
    r2bench predict RUN_DIR video.mp4 -q "..." # one video encoded once, many queries
    r2bench report out/                        # the report of every suite under out/
    r2bench check-method my_method.py NAME     # the method contract on your own method

Each subcommand has ``--help``. The older forms (``python run_all.py``, ``python -m
r2bench.bench.evaluate`` …) run the same code.

This module imports nothing heavy at the top: CPU threads must be configured before PyTorch
starts its thread pools (:mod:`r2bench.bench.threads`).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from r2bench.bench.threads import configure_early, threads_from_argv

COMMANDS = {
    "run": "run a suite (or --report alone: render what --out holds)",
    "prepare": "encode a real video folder once into the feature cache",
    "evaluate": "score a prediction file with the official metrics",
    "predict": "ground queries in videos with a trained run",
    "report": "render every suite under a folder into report.html and report.md",
    "check-method": "run the method contract on a method (yours included)",
}


# --------------------------------------------------------------------------- logging

def _drop_library_chatter(record: logging.LogRecord) -> bool:
    """open_clip narrates model creation on the root logger at INFO: not our output."""
    return record.levelno >= logging.WARNING or "open_clip" not in record.pathname


def configure_logging(quiet: bool = False) -> None:
    """Log lines (progress, notes, warnings) go to stderr; results (tables, JSON) to stdout."""
    from r2bench.core.errors import warnings_to_log
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    warnings_to_log()
    root = logging.getLogger()
    if _drop_library_chatter not in root.filters:
        root.addFilter(_drop_library_chatter)
    if int(os.environ.get("RANK", "0")) != 0:     # the other processes of a torchrun run: warnings only
        root.setLevel(logging.WARNING)


# --------------------------------------------------------------------------- run

def build_run_parser(prog: str = "r2bench run") -> argparse.ArgumentParser:
    from r2bench.bench import launch
    from r2bench.bench.suites import ALL, SUITES
    from r2bench.core.io import default_out_dir
    from r2bench.datasets.registry import DATASETS
    p = argparse.ArgumentParser(prog=prog, description="Run a suite: every run → the results ledger → the "
                                "rendered tables and figures.", formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--test-annotations", metavar="FILE",
                   help="table1: QVHighlights' released test ground truth; the test split is then scored locally "
                        "with the official metrics (the submission file is still written)")
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
    p.add_argument("--oom-retry", action=argparse.BooleanOptionalAction, default=True,
                   help="after CUDA out-of-memory in a training step, retry the run with twice the gradient "
                        "accumulation (half the micro-batch, the same batch) until it fits, recorded as such "
                        "(default: on)")
    p.add_argument("--memory", choices=["auto", "estimate", "measure"], default="auto",
                   help="peak memory at the paper's setting: auto (CPU: fake-tensor estimate; CUDA: measured once "
                        "per GPU and configuration after training, cached, the estimate where it does not fit), "
                        "estimate, or measure (again, ignoring the cache)")
    p.add_argument("--infer-timing", choices=["quick", "full", "none"], default="quick",
                   help=f"end-to-end inference timing from frames: quick (a few videos; default), full (64), none")
    p.add_argument("--curve-queries", type=int, default=128,
                   help="validation queries scored after every epoch for each run's learning curve (0: none; "
                        "default 128)")
    p.add_argument("--workers", type=int, help="frame-decoding processes for rows that train from frames "
                                                "(default: the cores on CUDA, 0 on the CPU)")
    p.add_argument("--memo-gb", type=float, help="RAM for decoded frames and features kept between epochs, GB "
                                                 "(default: R2BENCH_MEMO_GB, else 25%% of RAM, at most 16)")
    p.add_argument("--require-all-videos", action="store_true",
                   help="a video named by the annotations but missing from --video-dir is fatal (default: its "
                        "queries are skipped, and every record and table says so)")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="let video files be symbolic links that lead out of --video-dir (refused by default)")
    p.add_argument("--config", metavar="EXP.toml",
                   help="an experiment file: these options as TOML keys and a [set] table; the command line wins "
                        "(its resolved settings are stored with the results, experiment.json)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE",
                   help="a Python file whose methods register themselves (@register); repeatable. "
                        "Installed packages add methods through the entry-point group r2bench.methods")
    p.add_argument("--run-id", nargs="+", help="only the runs with these ids (what a Slurm job runs)")
    p.add_argument("--jobs", default=os.environ.get("R2BENCH_JOBS", "auto"), metavar="N|auto",
                   help="runs side by side in N processes on this machine, each with its share of the cores "
                        "(default $R2BENCH_JOBS, else auto: 2 on a CPU with 2 or more cores, else 1; "
                        "docs/benchmark.md, Runtime)")
    p.add_argument("--serve-runs", metavar="K/N", help=argparse.SUPPRESS)   # a job process of --jobs N
    launch.add_arguments(p)
    p.add_argument("--out", type=Path, default=default_out_dir(), help="output folder (default: ./out)")
    p.add_argument("--paper-scale", action="store_true",
                   help="only parameters and memory at the paper's setting (no data, weights or training)")
    p.add_argument("--fresh", action="store_true", help="re-run runs the ledger already has")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no library log lines")
    p.add_argument("--report", action="store_true",
                   help="write OUT/report.html and report.md (alone: from what --out holds, running nothing)")
    return p


def read_experiment(path: str | Path, parser: argparse.ArgumentParser) -> tuple[dict, list[str]]:
    """An experiment file (TOML): settings of ``r2bench run`` as a small diff over the defaults,
    with the option names as keys (``suite``, ``methods``, ``seeds``, ``size``, ``dataset``,
    ``epochs`` …; dashes or underscores) and a ``[set]`` table of ``KEY = VALUE`` preset overrides.
    Returns (option defaults, --set items); a key that is no option is an ``InputError``."""
    import tomllib
    from r2bench.core.errors import InputError
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise InputError(path, None, "config", f"cannot read the experiment file ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(path, None, "config", f"not valid TOML ({e})") from None
    options = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    defaults, sets = {}, []
    for key, value in table.items():
        if key == "set":
            if not isinstance(value, dict):
                raise InputError(path, None, "set", "expected a table: [set] then KEY = VALUE lines, e.g. "
                                                    '"train.lr" = 1e-3')
            sets += [f"{k}={_toml_text(v)}" for k, v in _flatten(value).items()]
            continue
        dest = key.replace("-", "_")
        if dest not in options:
            raise InputError(path, None, key, f"not an option of r2bench run (known: set, "
                                              f"{', '.join(sorted(options))})")
        action = options[dest]
        if action.nargs in ("+", "*") and not isinstance(value, list):
            value = [value]
        if action.type is not None and not isinstance(action, argparse.BooleanOptionalAction):
            try:
                value = [action.type(v) for v in value] if isinstance(value, list) else action.type(value)
            except (TypeError, ValueError):
                raise InputError(path, None, key, f"expected {getattr(action.type, '__name__', 'a value')}, "
                                                  f"got {value!r}") from None
        if action.choices is not None and value not in action.choices:
            raise InputError(path, None, key, f"expected one of {', '.join(map(str, action.choices))}, got {value!r}")
        defaults[dest] = value
    return defaults, sets


def _flatten(table: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1e-3}}`` and ``{"train.lr": 1e-3}`` alike → ``{"train.lr": 1e-3}``."""
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _toml_text(value) -> str:
    import json
    return json.dumps(value) if not isinstance(value, str) else value


def parse_run_args(argv: list[str] | None = None, prog: str = "r2bench run") -> argparse.Namespace:
    p = build_run_parser(prog)
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    file_sets: list[str] = []
    experiment = None
    if known.config:
        from r2bench.core.errors import InputError
        try:
            defaults, file_sets = read_experiment(known.config, p)
        except InputError as e:
            p.error(str(e))
        p.set_defaults(**defaults)
        experiment = dict(file=str(Path(known.config).resolve()), values=defaults, set=file_sets)
    args = p.parse_args(argv)
    args.set = [*file_sets, *args.set]           # the command line's --set wins (applied last)
    args.experiment = experiment
    if args.suite is None and not args.report:
        args.suite = "table9"
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    args.argv = argv
    args.jobs_of = None
    if args.serve_runs is not None:
        index, _, of = args.serve_runs.partition("/")
        if not (index.isdigit() and of.isdigit()):
            p.error(f"--serve-runs: expected K/N, got {args.serve_runs!r}")
        args.serve_runs, args.jobs_of = int(index), int(of)
    return args


def run_main(argv: list[str] | None = None, prog: str = "r2bench run") -> int:
    """``r2bench run ARGS`` (what ``python run_all.py ARGS`` runs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_early(threads_from_argv(argv))
    args = parse_run_args(argv, prog)
    configure_logging(args.quiet)
    from r2bench.bench.orchestrate import run_command
    from r2bench.bench.threads import apply
    from r2bench.core.errors import guarded
    apply(args.threads)
    return guarded(run_command, args, named={"the output folder, --out": str(args.out)})


# --------------------------------------------------------------------------- the other commands

def _delegate(module: str, argv: list[str], prog: str) -> int:
    """Run ``module.main(argv)`` (the ``python -m`` form of the command) with ``prog`` in its help."""
    import importlib
    mod = importlib.import_module(module)
    old = sys.argv[0]
    sys.argv[0] = prog
    try:
        return mod.main(argv) or 0
    finally:
        sys.argv[0] = old


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        print(__doc__.split("\n\n")[0] + "\n\nusage: r2bench COMMAND [options]   (r2bench COMMAND --help)\n\ncommands:")
        for name, what in COMMANDS.items():
            print(f"  {name:<{width}}  {what}")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from r2bench import __version__
        print(f"r2bench {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"r2bench: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if command == "run":
        return run_main(rest)
    configure_early(threads_from_argv(rest))
    configure_logging()
    from r2bench.core.errors import guarded
    module = {"prepare": "r2bench.datasets.prepare", "evaluate": "r2bench.bench.evaluate",
              "predict": "r2bench.bench.predict", "report": "r2bench.reports.__main__",
              "check-method": "r2bench.methods.contract"}[command]
    return guarded(_delegate, module, rest, f"r2bench {command}")


if __name__ == "__main__":
    sys.exit(main())
