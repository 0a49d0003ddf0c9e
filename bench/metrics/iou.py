"""Temporal IoU exactly as the official moment-retrieval evaluators compute it.

The official evaluators (moment_detr ``standalone_eval``, and UniVTG's ``eval/eval.py``, which
R²-Tuning copies as ``datasets/eval/evaluation.py``) use **two** IoU formulas, in float64:

* :func:`cross_iou` (their ``compute_temporal_iou_batch_cross``):
  ``inter / (len_a + len_b - inter)``, ``inter = clip(min(ends) - max(starts), 0)``, no epsilon
  (0/0 gives NaN). mAP's matching uses it, and so does the choice of the ground-truth window
  that R1/R5 compare with.
* :func:`paired_iou` (their ``compute_temporal_iou_batch_paired``):
  ``inter / (max(ends) - min(starts))``, the hull of the two windows as the denominator, and 0
  where that hull is 0. The R1, R5 and mIoU values themselves are computed with it.

For two overlapping windows both are the same number in real arithmetic, but not always in
floating point: ``(len_a + len_b - inter)`` rounds three times, the hull once. A prediction whose
IoU is exactly a threshold (0.3, 0.5, 0.7) can land on either side of it depending on the
formula, which is what decides R1@θ/R5@θ at the threshold. No ``+1``, no inclusive ends, no
clamping to the video, comparisons ``>=``.

Sources (checked out at the commits named in ``docs/metrics.md``): R²-Tuning
``datasets/eval/utils.py`` lines 17-33 (paired) and 36-63 (cross), ``datasets/eval/evaluation.py``
lines 83-150 (R1, mIoU, R5); UniVTG ``eval/utils.py`` (same functions) and ``eval/eval.py``
``compute_mr_r1``/``compute_mr_r5``; moment_detr ``standalone_eval/eval.py`` lines 72-96 (R1).
"""
from __future__ import annotations

import numpy as np


def cross_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of windows ``a (..., N, 2)`` against ``b (..., M, 2)`` → ``(..., N, M)``:
    ``inter / (len_a + len_b - inter)`` (official ``compute_temporal_iou_batch_cross``; NaN on 0/0)."""
    left = np.maximum(a[..., :, None, 0], b[..., None, :, 0])
    right = np.minimum(a[..., :, None, 1], b[..., None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = (a[..., :, None, 1] - a[..., :, None, 0]) + (b[..., None, :, 1] - b[..., None, :, 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of window ``a[..., i]`` with ``b[..., i]`` (``(..., 2)`` each) as the official
    ``compute_temporal_iou_batch_paired``: ``max(0, min(ends) - max(starts)) / (max(ends) -
    min(starts))``, and 0 where that denominator is 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    inter = np.maximum(0, np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]))
    hull = np.maximum(a[..., 1], b[..., 1]) - np.minimum(a[..., 0], b[..., 0])
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)


def pad(arrays: list[np.ndarray], width: int, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Stack the first ``width`` rows of ``(n_i, k)`` arrays into ``(Q, width, k)``, ``fill`` where a
    query has fewer rows, and a validity mask ``(Q, width)``."""
    k = arrays[0].shape[1]
    out = np.full((len(arrays), width, k), fill, dtype=float)
    valid = np.zeros((len(arrays), width), dtype=bool)
    for q, arr in enumerate(arrays):
        n = min(len(arr), width)
        out[q, :n] = arr[:n]
        valid[q, :n] = True
    return out, valid


def first_k_iou(preds: list[np.ndarray], gts: list[np.ndarray], k: int) -> np.ndarray:
    """Per query, the official R1 (``k=1``) or R5 (``k=5``) value of its listed windows
    ``preds[q] (n, ≥2)`` against its ground truth ``gts[q] (G, 2)``; 0 for a query without
    windows (the official code would fail on it).

    R5 (``compute_mr_r5``): :func:`cross_iou` of the first ``k`` windows × every ground-truth
    window, NaN → 0; the first maximum in row-major (window, ground truth) order picks the pair;
    the value is :func:`paired_iou` of that pair. R1 (``compute_mr_r1``) takes ``np.argmax`` of
    the first window's :func:`cross_iou` without zeroing NaN; the value is the same, because a
    NaN (0/0) only arises for a window that overlaps no ground truth at all (zero-length or
    ending before it starts), whose paired IoU is 0 with every ground-truth window."""
    has = np.array([len(p) > 0 for p in preds], dtype=bool)
    out = np.zeros(len(preds))
    if not has.any():
        return out
    pred, pred_valid = pad([p[:, :2] for p, h in zip(preds, has) if h], k)
    gt_list = [g for g, h in zip(gts, has) if h]
    gt, gt_valid = pad(gt_list, max(len(g) for g in gt_list))
    cross = np.nan_to_num(cross_iou(pred, gt), nan=0.0)                   # (Q, k, G)
    cross = np.where(pred_valid[:, :, None] & gt_valid[:, None, :], cross, -np.inf)
    pi, gi = np.divmod(np.argmax(cross.reshape(len(pred), -1), axis=1), gt.shape[1])
    rows = np.arange(len(pred))
    out[has] = paired_iou(pred[rows, pi], gt[rows, gi])
    return out
