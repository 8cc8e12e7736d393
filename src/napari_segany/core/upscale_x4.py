"""Masks from low-resolution logits enlarged exactly 4x: ``bilinear(logits) > 0`` fast.

The decoder's logits are 4x coarser than the model frame, and for a plane whose long
side is the frame's (1024 x 1024, 1024 x 768, ... for SAM) they are enlarged once,
straight to the plane. A bilinear 4x enlargement (``align_corners=False``, edges
clamped) gives output index ``4 i + p`` from sources ``i - 1, i`` (p = 0, 1) or
``i, i + 1`` (p = 2, 3) with fixed positive weights (3/8, 5/8), (1/8, 7/8),
(7/8, 1/8), (5/8, 3/8). Only the sign is wanted, so each output phase is computed
divided by its first weight, ``a + (w2 / w1) b``: one pass over two contiguous
slices. Along the first axis this scales whole columns by one positive factor,
which the second axis' sums keep, so every sign is the bilinear value's. The last
pass is thresholded straight into the bool masks from a small reused buffer;
torch's general kernel and the 12 MB float intermediate of 3 masks at 1024 x 1024
are avoided (measured ~2x faster at 2 threads). Only pixels whose logit is within
float rounding of 0 could differ from thresholding ``upsample_bilinear2d``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["threshold_upscaled_x4"]

# Per output phase p (index 4 i + p): offset of the first source (-1: i - 1, 0: i) and
# the ratio of the second source's weight to the first's.
_PHASES = ((-1, 5 / 3), (-1, 7.0), (0, 1 / 7), (0, 3 / 5))


def _enlarge_last_axis(source: torch.Tensor, target: torch.Tensor) -> None:
    """4x bilinear enlargement of ``source`` (..., n) into ``target`` (..., 4 n), each
    output column divided by a positive constant of its own (module docstring)."""
    for phase, (offset, ratio) in enumerate(_PHASES):
        out = target[..., phase::4]
        inner = out[..., 1:] if offset else out[..., :-1]
        torch.add(source[..., :-1], source[..., 1:], alpha=ratio, out=inner)
        edge = 0 if offset else -1
        out[..., edge] = source[..., edge]


def threshold_upscaled_x4(
    low_res: torch.Tensor, out_hw: tuple[int, int], out: np.ndarray | None = None
) -> np.ndarray:
    """``bilinear_4x(low_res)[:, :H, :W] > 0`` as bool, without a float image.

    Parameters
    ----------
    low_res : torch.Tensor, (M, h, w) float32 on the CPU
        Logits; (H, W) must fit in (4 h, 4 w).
    out_hw : (int, int)
        (H, W), the top-left part of the enlargement that is kept.
    out : numpy.ndarray, (M, H, W) bool, optional
        Where to write the masks (e.g. a slice of a larger array).

    Returns
    -------
    numpy.ndarray, (M, H, W) bool
        ``out`` when given.
    """
    count, low_h, low_w = low_res.shape
    height, width = out_hw
    wide = torch.empty(count, low_h, 4 * low_w)
    _enlarge_last_axis(low_res, wide)
    wide = wide[..., :width]
    masks = np.empty((count, height, width), dtype=np.bool_) if out is None else out
    rows = torch.empty(count, low_h, width)
    for phase, (offset, ratio) in enumerate(_PHASES):
        inner = rows[:, 1:] if offset else rows[:, :-1]
        torch.add(wide[:, :-1], wide[:, 1:], alpha=ratio, out=inner)
        edge = 0 if offset else -1
        rows[:, edge] = wide[:, edge]
        target = masks[:, phase::4]
        np.greater(rows[:, : target.shape[1]].numpy(), 0.0, out=target)
    return masks
