"""Video frames through decord: one frame per clip, resized and centre-cropped to a square."""
from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from r2bench.core.errors import InputError


def _open(path: str | PathLike):
    """A decord ``VideoReader`` for ``path``, or an ``InputError`` naming the file."""
    import decord  # imported lazily: decord is only needed when videos are read

    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "video", "file not found" if not path.exists() else "not a regular file")
    try:
        with native_stderr_captured():     # decord/ffmpeg print "ERROR opening ..." straight to fd 2
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            n_frames, fps = len(reader), float(reader.get_avg_fps())
    except Exception as exc:  # decord raises bare DECORDError/RuntimeError for any decoding problem
        raise InputError(path, None, "video", f"cannot decode video ({type(exc).__name__}: {_first_line(exc)})") from exc
    if n_frames <= 0 or not math.isfinite(fps) or fps <= 0:
        raise InputError(path, None, "video", f"no decodable frames (frames={n_frames}, fps={fps})")
    return reader, n_frames, fps


@contextmanager
def native_stderr_captured():
    """Hold back what C and C++ code (decord, ffmpeg) writes straight to file descriptor 2 while
    a video is opened: its failure is reported once, as an ``InputError`` naming the file, and its
    log lines would only repeat it. What is held back is dropped; Python's own stderr is flushed first."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):       # no real stderr (embedded, pytest capture): nothing to hide
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


SAMPLE_BYTES = 1 << 14


@lru_cache(maxsize=65536)
def _identity(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for offset in sorted({0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)}):
            f.seek(offset)
            h.update(f.read(SAMPLE_BYTES))
    return f"{size}-{h.hexdigest()}"


def video_identity(path: str | PathLike) -> str:
    """What a video file is, cheaply: its size and a digest of 16 KiB at its start, middle and
    end (not its name or mtime: a copy keeps its identity, a replaced or truncated file does
    not). Features cached from a video carry this, and are rebuilt when it changes."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError:
        raise InputError(path, None, "video", "file not found") from None
    return _identity(str(path), st.st_size, st.st_mtime_ns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"


def video_duration(path: str | PathLike) -> float:
    """Duration in seconds (number of frames / average fps)."""
    _, n_frames, fps = _open(path)
    return n_frames / fps


def read_frames(path: str | PathLike, fps: float, size: int) -> np.ndarray:
    """Frames at the centre of each ``1/fps``-second clip, as uint8 ``(T, size, size, 3)``.

    ``T = max(1, floor(duration * fps))``; each frame's shorter side is resized to ``size``
    (bilinear, antialiased) and the centre ``size x size`` square is kept.
    """
    if fps <= 0 or size <= 0:
        raise ValueError(f"fps and size must be positive (got fps={fps}, size={size})")
    reader, n_frames, video_fps = _open(path)
    n_clips = max(1, math.floor(n_frames / video_fps * fps + 1e-6))
    times = (np.arange(n_clips) + 0.5) / fps
    indices = np.minimum(np.floor(times * video_fps + 1e-6).astype(np.int64), n_frames - 1)
    try:
        frames = reader.get_batch(indices.tolist()).asnumpy()
    except Exception as exc:
        raise InputError(path, None, "video", f"cannot decode frames ({type(exc).__name__}: {_first_line(exc)})") from exc
    return _resize_crop(frames, size)


def _resize_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side of ``(T, H, W, 3)`` uint8 frames to ``size``, then centre-crop."""
    h, w = frames.shape[1:3]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        x = x[:, :, top:top + size, left:left + size]
        frames = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(frames)
