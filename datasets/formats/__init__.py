"""Annotation readers, one module per file format, registered by format name (see ``base``)."""
from r2bench.datasets.formats.base import READERS, ClampWarning, Sample, get_reader, register_reader  # noqa: F401
from r2bench.datasets.formats import grounding, qvhighlights, tvsum, youtube  # noqa: F401,E402  (registers the readers)
