"""Memos bounded in bytes: decoded frames and cached features kept in RAM up to a budget.

A run reads the same videos every epoch, so it keeps what it decoded or loaded — but a dataset
of thousands of 150-s videos does not fit in RAM (48.8 MB of frames per video measured at
ViT-B/32's 224 px). :class:`ByteLRU` evicts the least recently used entries once their bytes
pass a budget; an entry larger than the whole budget is returned and not kept.

The budget: :func:`memo_budget` — ``R2BENCH_MEMO_GB`` (or ``--memo-gb``) gigabytes, else a
quarter of this machine's RAM, at most 16 GiB. ``functools.lru_cache`` bounds entries, not
bytes, which is why this is written here.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

import torch

V = TypeVar("V")
DEFAULT_SHARE = 0.25
DEFAULT_CAP = 16 * 2**30
ENV = "R2BENCH_MEMO_GB"


def total_ram() -> int:
    """Physical memory of this machine in bytes (8 GiB if it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 8 * 2**30


def memo_budget(gigabytes: float | None = None) -> int:
    """Bytes all of a process's memos may hold together: ``gigabytes``, else ``$R2BENCH_MEMO_GB``,
    else min(25 % of RAM, 16 GiB). A bad value is a ``ValueError`` naming it."""
    if gigabytes is None and os.environ.get(ENV):
        try:
            gigabytes = float(os.environ[ENV])
        except ValueError:
            raise ValueError(f"{ENV}={os.environ[ENV]!r}: expected a number of gigabytes") from None
    if gigabytes is not None:
        if not gigabytes >= 0:
            raise ValueError(f"memo budget must be ≥ 0 GB, got {gigabytes}")
        return int(gigabytes * 2**30)
    return int(min(DEFAULT_SHARE * total_ram(), DEFAULT_CAP))


def nbytes(value) -> int:
    """Bytes held by a tensor, an array, or a dict/list/tuple of them (anything else: 0)."""
    if torch.is_tensor(value):
        return value.element_size() * value.nelement()
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0


class ByteLRU(Generic[V]):
    """``fn(key)`` memoised in least-recently-used order within ``max_bytes`` (thread-safe)."""

    def __init__(self, fn: Callable[[Hashable], V], max_bytes: int, sizeof: Callable[[V], int] = nbytes):
        self.fn, self.max_bytes, self.sizeof = fn, int(max_bytes), sizeof
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = self.hits = self.misses = self.evicted = 0

    def __call__(self, key: Hashable) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
        value = self.fn(key)
        size = self.sizeof(value)
        with self._lock:
            self.misses += 1
            if size > self.max_bytes or key in self._items:
                return value
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes and self._items:
                _, (_, freed) = self._items.popitem(last=False)
                self.bytes -= freed
                self.evicted += 1
        return value

    def __len__(self) -> int:
        return len(self._items)

    def cache_clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0
