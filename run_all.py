"""Run a suite from a source checkout: ``python run_all.py ARGS`` is ``r2bench run ARGS``.

    python run_all.py --suite table9                      # built-in synthetic benchmark
    python run_all.py --suite table9 --paper-scale        # params + memory at the paper's setting, seconds
    python run_all.py --suite table9 --dataset qvhighlights --video-dir VIDEOS --weights ViT-B-32.pt
    python run_all.py --suite all                         # every suite, then out/report.html + report.md
    python run_all.py --report                            # only the report of everything under --out

A thin script: the library (``r2bench.cli``, ``r2bench.bench.orchestrate``) does the work, and
nothing imports this file. ``python run_all.py --help`` lists every option.
"""
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # this checkout's r2bench, from any folder
    from r2bench.cli import run_main
    sys.exit(run_main(sys.argv[1:], prog="python run_all.py"))
