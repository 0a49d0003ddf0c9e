"""One file per transfer method; importing this package registers them all."""
from methods.tuners import controls, frozen, r2_tuning  # noqa: F401  (registration side effects)
