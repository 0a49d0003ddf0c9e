"""Transfer methods: one file each, registered in :data:`methods.base.REGISTRY`."""
from methods import frozen, r2_tuning  # noqa: F401  (registration side effects)
