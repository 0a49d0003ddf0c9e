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


def _stack(arrays: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros((len(arrays), max(width, 1), 2))
    valid = np.zeros((len(arrays), max(width, 1)), dtype=bool)
    for q, arr in enumerate(arrays):
        n = min(len(arr), width)
        out[q, :n] = arr[:n, :2]
        valid[q, :n] = True
    return out, valid


def top1_iou(first: np.ndarray, gts: list[np.ndarray]) -> np.ndarray:
    """Per query, the official R1/mIoU value of its first listed window ``first[q] (2,)``:
    the ground-truth window is ``argmax`` of :func:`cross_iou` (first on ties; a NaN wins, as
    ``np.argmax`` returns the first NaN), and the value is :func:`paired_iou` with it."""
    first = np.asarray(first, dtype=np.float64).reshape(-1, 2)
    gt, gt_valid = _stack(gts, max((len(g) for g in gts), default=1))
    cross = cross_iou(first[:, None, :], gt)[:, 0, :]                      # (Q, G)
    cross = np.where(gt_valid, cross, -np.inf)
    j = np.argmax(cross, axis=1)
    return paired_iou(first, gt[np.arange(len(gts)), j])


def best_of_k_iou(preds: list[np.ndarray], gts: list[np.ndarray], k: int) -> np.ndarray:
    """Per query, the official R5 value (``compute_mr_r5``): :func:`cross_iou` of the first ``k``
    listed windows against every ground-truth window, NaN → 0; the first maximum in row-major
    (prediction, ground truth) order picks the pair; the value is :func:`paired_iou` of that pair.
    ``preds[q]`` must hold at least one window."""
    pred, pred_valid = _stack(preds, k)
    gt, gt_valid = _stack(gts, max((len(g) for g in gts), default=1))
    cross = np.nan_to_num(cross_iou(pred, gt), nan=0.0)                    # (Q, k, G)
    cross = np.where(pred_valid[:, :, None] & gt_valid[:, None, :], cross, -np.inf)
    flat = np.argmax(cross.reshape(len(preds), -1), axis=1)
    pi, gi = np.divmod(flat, gt.shape[1])
    rows = np.arange(len(preds))
    return paired_iou(pred[rows, pi], gt[rows, gi])
