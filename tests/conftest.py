"""Benchmarks (``perf`` marker, tests/perf) and slow end-to-end suite runs (``slow``) run only
when asked for:

    pytest tests/perf --benchmark-only                 # run them
    pytest tests/perf --benchmark-only --benchmark-autosave, later --benchmark-compare
    pytest -m perf tests/perf --benchmark-enable       # the same, with the plain tests too
    pytest -m slow                                     # the slow suite runs (minutes)

The default ``pytest`` run deselects both (they take minutes)."""


def _asked_for(config, marker: str) -> bool:
    expr = (config.getoption("markexpr", "") or "").replace(f"not {marker}", "")
    return marker in expr


def _benchmarks_asked_for(config) -> bool:
    opt = config.getoption
    return bool(opt("benchmark_only", False) or opt("benchmark_enable", False) or _asked_for(config, "perf"))


def pytest_collection_modifyitems(config, items):
    skip = [m for m, asked in (("perf", _benchmarks_asked_for(config)), ("slow", _asked_for(config, "slow")))
            if not asked]
    dropped = [it for it in items if any(it.get_closest_marker(m) is not None for m in skip)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = {id(it) for it in dropped}
        items[:] = [it for it in items if id(it) not in gone]
