"""``python -m datasets.synthetic``: generate the built-in benchmark by hand (see ``generator``)."""
from datasets.synthetic.generator import main

main()
