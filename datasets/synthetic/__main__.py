"""``python -m r2bench.datasets.synthetic``: generate the built-in benchmark by hand (see ``generator``)."""
from r2bench.datasets.synthetic.generator import main

main()
