"""``python -m r2bench COMMAND ...``: the ``r2bench`` command line (:mod:`r2bench.cli`)."""
import sys

from r2bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
