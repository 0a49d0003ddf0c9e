"""On-disk cache of frozen-backbone features: one checksummed fp16 safetensors file per video.

Layout: ``root/<digest(key)>/key.json`` plus ``root/<digest(key)>/<safe vid>.safetensors``.
The key names everything the features depend on (backbone, weights digest, fps, layers,
image size, ...), so a change to any of them selects a fresh directory. Every entry's
metadata records the video id, the key digest, a blake2b checksum of the tensor bytes and
(``source``) the identity of the video file it was computed from
(``datasets.video.video_identity``); an entry that fails to parse or verify is logged,
deleted and reported as missing, and one computed from another file than the video now
under that name (replaced, truncated, emptied) is stale: deleted and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from r2bench.core.io import atomic_write
from r2bench.methods.checkpoints import tensors_checksum

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def key_digest(key: Mapping) -> str:
    """Short stable digest of a JSON-serialisable key (order of dict entries is irrelevant)."""
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def safe_name(vid: str) -> str:
    """File-name stem for a video id: the id itself when harmless, else a sanitised id plus a hash."""
    vid = str(vid)
    if _SAFE_ID.fullmatch(vid):
        return vid
    stem = _UNSAFE_CHARS.sub("_", vid).strip("._")[:80] or "vid"
    return f"{stem}-{hashlib.blake2b(vid.encode(), digest_size=6).hexdigest()}"


class CorruptEntry(Exception):
    """A cache file that cannot be trusted (truncated, unparsable, wrong key or checksum)."""


class StaleEntry(Exception):
    """A sound cache file computed from another video file than the one now under its name."""


@dataclass
class CacheStats:
    """Counters: valid entries read, lookups that found nothing usable, corrupt entries dropped."""

    hits: int = 0
    misses: int = 0
    rebuilt: int = 0
    stale: int = 0


class FeatureCache:
    """Feature cache for one key; see the module docstring for the layout and checks."""

    def __init__(self, root: str | os.PathLike, key: Mapping):
        self.key = json.loads(json.dumps(key, sort_keys=True))
        self.digest = key_digest(self.key)
        self.dir = Path(root) / self.digest
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stats = CacheStats()
        key_file = self.dir / "key.json"
        if key_file.exists():
            stored = json.loads(key_file.read_text())
            if stored != self.key:
                raise RuntimeError(f"{key_file}: holds a different key with the same digest: {stored!r}")
        else:
            atomic_write(key_file, (json.dumps(self.key, sort_keys=True, indent=2) + "\n").encode())

    def path_for(self, vid: str) -> Path:
        """The entry file of ``vid`` (it may not exist)."""
        return self.dir / f"{safe_name(vid)}.safetensors"

    def put(self, vid: str, tensors: Mapping[str, torch.Tensor], source: str | None = None) -> dict[str, torch.Tensor]:
        """Store ``tensors`` (floating → fp16, others kept) atomically, computed from the video
        file of identity ``source``; returns what was stored."""
        stored = {}
        for name, t in tensors.items():
            t = t.detach().cpu()
            stored[name] = (t.to(torch.float16) if t.is_floating_point() else t).contiguous()
        metadata = {
            "format": FORMAT_VERSION,
            "vid": str(vid),
            "key_digest": self.digest,
            "key": json.dumps(self.key, sort_keys=True),
            "checksum": tensors_checksum(stored),
            "source": source or "",
        }
        atomic_write(self.path_for(vid), st_save(stored, metadata=metadata))
        return stored

    def header(self, vid: str) -> dict | None:
        """The entry's metadata, read from its header only, if the file is as long as its header
        says (catches a missing or truncated file, not flipped bits); else None."""
        path = self.path_for(vid)
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if n <= 0 or 8 + n > size:
                    return None
                header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            return None
        return (header.get("__metadata__") or {}) if size == 8 + n + end else None

    def complete(self, vid: str, source: str | None = None) -> bool:
        """Cheap check that ``vid`` has a whole entry of this key (and, given ``source``, made
        from that video file); the tensors' checksum is verified when they are read."""
        meta = self.header(vid)
        return (meta is not None and (meta.get("format"), meta.get("vid"), meta.get("key_digest"))
                == (FORMAT_VERSION, str(vid), self.digest) and (source is None or meta.get("source") == source))

    def get(self, vid: str, source: str | None = None) -> dict[str, torch.Tensor] | None:
        """The stored tensors, or None when absent, corrupt (logged and deleted) or, given
        ``source``, computed from another video file (stale: logged and deleted)."""
        path = self.path_for(vid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        try:
            tensors = self._verify(vid, data, source)
        except StaleEntry as e:
            logger.warning("feature cache: %s was computed from another file than the video now there (%s); "
                           "deleted, it will be rebuilt", path, e)
            path.unlink(missing_ok=True)
            self.stats.stale += 1
            self.stats.misses += 1
            return None
        except CorruptEntry as e:
            logger.warning("feature cache: corrupt entry %s (%s); deleted, it will be rebuilt", path, e)
            path.unlink(missing_ok=True)
            self.stats.rebuilt += 1
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return tensors

    def get_or_compute(
        self, vid: str, fn: Callable[[], Mapping[str, torch.Tensor]], source: str | None = None
    ) -> dict[str, torch.Tensor]:
        """``get(vid, source)``, or compute with ``fn()``, store and return the stored (fp16) tensors."""
        tensors = self.get(vid, source)
        return tensors if tensors is not None else self.put(vid, fn(), source)

    def _verify(self, vid: str, data: bytes, source: str | None = None) -> dict[str, torch.Tensor]:
        if len(data) < 8:
            raise CorruptEntry(f"only {len(data)} bytes")
        try:
            header_len = int.from_bytes(data[:8], "little")
            metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
            tensors = st_load(data)
        except Exception as e:  # safetensors/json raise several types for damaged input
            raise CorruptEntry(f"unreadable: {e}") from e
        expected = {"format": FORMAT_VERSION, "vid": str(vid), "key_digest": self.digest}
        for field, value in expected.items():
            if metadata.get(field) != value:
                raise CorruptEntry(f"metadata {field}={metadata.get(field)!r}, expected {value!r}")
        if metadata.get("checksum") != tensors_checksum(tensors):
            raise CorruptEntry("checksum mismatch")
        if source is not None and metadata.get("source") != source:
            raise StaleEntry(f"entry from video {metadata.get('source') or 'of unknown identity'}, video now {source}")
        return tensors


class TapCache:
    """The cache a run reads: its own (``exact``, the key of its taps) and, read-only, any
    ``wider`` cache of the same key but taps that cover the run's (every point it taps, at
    every layer it taps it): a K = 4 entry (layers 8–11) serves w/o Tuning's layer 11 without
    encoding the videos again. Read from a wider entry, each point keeps only the run's layers.
    What no cache holds is computed and stored in ``exact``."""

    def __init__(self, exact: FeatureCache, wider: list[tuple[FeatureCache, dict[str, list[int]]]] = ()):
        self.exact, self.wider = exact, list(wider)

    @classmethod
    def find(cls, root: str | os.PathLike, key: Mapping, taps) -> TapCache:
        """``exact`` for ``key`` under ``root``, and every cache under ``root`` whose key differs
        only in taps that cover ``taps`` (a ``methods.hooks.Taps``), narrowest first."""
        exact = FeatureCache(root, key)
        want = {p: list(taps.layers_of(p)) for p in taps.points}
        wider = []
        for key_file in sorted(Path(root).glob("*/key.json")):
            if key_file.parent == exact.dir:
                continue
            try:
                other = json.loads(key_file.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(other, dict) or {k: v for k, v in other.items() if k != "taps"} != \
                    {k: v for k, v in exact.key.items() if k != "taps"}:
                continue
            index = _slices(other.get("taps") or {}, want)
            if index is not None:
                wider.append((len(other["taps"].get("layers", [])), FeatureCache(root, other), index))
        return cls(exact, [(c, index) for _, c, index in sorted(wider, key=lambda t: t[0])])

    @property
    def key(self) -> dict:
        return self.exact.key

    @property
    def dir(self) -> Path:
        return self.exact.dir

    @property
    def stats(self) -> CacheStats:
        return self.exact.stats

    def path_for(self, vid: str) -> Path:
        """The file of ``vid`` in the run's own cache (it may not exist)."""
        return self.exact.path_for(vid)

    def complete(self, vid: str, source: str | None = None) -> bool:
        return self.exact.complete(vid, source) or any(c.complete(vid, source) for c, _ in self.wider)

    def put(self, vid: str, tensors: Mapping[str, torch.Tensor], source: str | None = None) -> dict[str, torch.Tensor]:
        return self.exact.put(vid, tensors, source)

    def get(self, vid: str, source: str | None = None) -> dict[str, torch.Tensor] | None:
        if self.exact.complete(vid, source) or not self.wider:
            found = self.exact.get(vid, source)
            if found is not None:
                return found
        for cache, index in self.wider:
            if cache.complete(vid, source):
                tensors = cache.get(vid, source)
                if tensors is not None:
                    self.exact.stats.hits += 1
                    return {p: tensors[p][:, idx].contiguous() for p, idx in index.items()}
        return None

    def get_or_compute(self, vid: str, fn: Callable[[], Mapping[str, torch.Tensor]],
                       source: str | None = None) -> dict[str, torch.Tensor]:
        tensors = self.get(vid, source)
        return tensors if tensors is not None else self.put(vid, fn(), source)


def _slices(have: Mapping, want: dict[str, list[int]]) -> dict[str, list[int]] | None:
    """Per point, the positions of the wanted layers among a wider cache's stacked layers; None
    if that cache lacks a wanted point or layer."""
    layers = list(have.get("layers") or [])
    narrowed = dict(have.get("point_layers") or {})
    out = {}
    for point, wanted in want.items():
        if point not in (have.get("points") or []):
            return None
        stacked = list(narrowed.get(point, layers))
        if not set(wanted) <= set(stacked):
            return None
        out[point] = [stacked.index(layer) for layer in wanted]
    return out
