"""One file per transfer method; importing this package registers them all."""
from methods.tuners import frozen, r2_tuning  # noqa: F401  (registration side effects)
from methods.tuners import full, lora, vpt, vop, st_adapter  # noqa: F401,E402  (Table 9: gradient through CLIP)
