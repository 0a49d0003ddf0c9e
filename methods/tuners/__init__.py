"""One file per transfer method; importing this package registers them all."""
from methods.tuners import frozen, r2_tuning  # noqa: F401  (registration side effects)
from methods.tuners import e3va, losa, lst  # noqa: F401
