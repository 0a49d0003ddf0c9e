"""Benchmarks (``perf`` marker, tests/perf) run only when asked for:

    pytest tests/perf --benchmark-only                 # run them
    pytest tests/perf --benchmark-only --benchmark-autosave, later --benchmark-compare
    pytest -m perf tests/perf --benchmark-enable       # the same, with the plain tests too

The default ``pytest`` run deselects them (they take minutes)."""


def _benchmarks_asked_for(config) -> bool:
    opt = config.getoption
    return bool(opt("benchmark_only", False) or opt("benchmark_enable", False)
                or "perf" in (opt("markexpr", "") or "").replace("not perf", ""))


def pytest_collection_modifyitems(config, items):
    if _benchmarks_asked_for(config):
        return
    kept = [it for it in items if it.get_closest_marker("perf") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[it for it in items if it.get_closest_marker("perf") is not None])
        items[:] = kept
