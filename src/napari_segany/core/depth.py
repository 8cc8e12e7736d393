"""How deep a pixel lies inside a mask: the distance to the nearest pixel outside it,
the image border counting as outside (so a mask cut by the border is entered away
from the cut). Prompt points at the "most interior pixel" use it everywhere."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["deepest_pixel", "inner_depth"]


def inner_depth(mask: np.ndarray) -> np.ndarray:
    """(H, W) float64: each pixel's Euclidean distance to the nearest pixel outside the
    (H, W) bool ``mask`` or beyond the border (0 outside the mask)."""
    return ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]


def deepest_pixel(mask: np.ndarray) -> tuple[tuple[int, int], float]:
    """The (row, col) of ``mask``'s most interior pixel (the first on ties, in C order)
    and its depth (:func:`inner_depth`)."""
    depth = inner_depth(mask)
    flat = int(np.argmax(depth))
    y, x = np.unravel_index(flat, depth.shape)
    return (int(y), int(x)), float(depth.ravel()[flat])
