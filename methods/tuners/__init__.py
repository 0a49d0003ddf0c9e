"""One file per transfer method; importing this package registers them all (Table 9 order, then
the benchmark's controls)."""
from r2bench.methods.tuners import frozen, full, lora, vpt, vop, st_adapter, e3va, losa, lst, r2_tuning  # noqa: F401
from r2bench.methods.tuners import adaptformer  # noqa: F401  (not in Table 9: the eleventh method of docs/architecture.md)
from r2bench.methods.tuners import side4video, dist  # noqa: F401  (not in Table 9: METL side networks, first built as plugins)
from r2bench.methods.tuners import controls  # noqa: F401
