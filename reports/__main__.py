"""``r2bench report OUT_DIR`` (``python -m r2bench.reports``): render every suite under OUT_DIR and write
report.html + report.md.

Checkpoint figures (attention maps, layer similarity, qualitative) need the backbone weights
and the dataset's videos: the built-in benchmark and its tiny CLIP are found on their own;
for real data pass ``--video-dir`` (and ``--annotations``) and ``--weights``.
"""
from __future__ import annotations

import argparse
import logging
import sys

from r2bench.core.errors import InputError
from r2bench.reports.figures.sources import Sources
from r2bench.reports.report import write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="r2bench report", description=__doc__.splitlines()[0])
    p.add_argument("out_dir", help="folder holding suite folders (each with a ledger.jsonl), e.g. out/")
    p.add_argument("--report-dir", help="where report.html and report.md go (default: OUT_DIR)")
    p.add_argument("--weights", nargs="+", default=[], help="backbone checkpoint files the runs used")
    p.add_argument("--video-dir", help="videos of a real dataset (checkpoint figures)")
    p.add_argument("--annotations", help="annotation folder of a real dataset (checkpoint figures)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sources = Sources(tuple(args.weights), args.video_dir, args.annotations)
    from r2bench.bench.suites import SUITES      # a command entry point: the declarations live in bench
    try:
        html_path, md_path, results = write_report(args.out_dir, args.report_dir, figures=not args.no_figures,
                                                   sources=sources, suites=SUITES)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in results:
        if isinstance(r, tuple):
            print(f"suite {r[0]} ({r[1]}): NOT RENDERED — {r[2]}", file=sys.stderr)
        else:
            skipped = f", {len(r.skipped)} figures not drawn" if r.skipped else ""
            print(f"suite {r.suite} ({r.suite_dir}): {len(r.tables)} tables, {len(r.figures)} figures{skipped}")
    print(html_path)
    print(md_path)
    return 1 if any(isinstance(r, tuple) for r in results) else 0


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
