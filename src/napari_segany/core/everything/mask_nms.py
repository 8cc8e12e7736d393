"""Mask NMS and exclusive painting: micro-sam's ``util.apply_nms`` semantics.

Prompts placed automatically (:mod:`.apg`) give one mask each; many describe the same
object. micro-sam keeps them as follows, and so do we:

1. masks of ``area <= min_size`` pixels are dropped (``min_size > 0``);
2. greedy NMS on the *masks*: by score (predicted IoU x stability score) from the
   highest, a mask is dropped when its IoU (or, with ``intersection_over_min``, its
   intersection over the smaller area) with a kept mask exceeds ``threshold``; only
   pairs whose boxes overlap with a positive area are compared (others count as 0);
3. the kept masks are painted from the largest to the smallest, each only on pixels
   still free, ids in that order;
4. every 4-connected part of a painted object becomes an object of its own; parts of
   fewer than ``min_size`` pixels are dropped and the ids made consecutive.

Equal to micro-sam's labels on the same masks (``tests/test_oracle_apg.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label as label_parts

from .candidates import GridCandidates
from .selection import mask_window

__all__ = ["mask_nms", "paint_exclusive"]


class _Windows:
    """Candidates' masks on their inclusive boxes; those marked kept stay decoded (the
    NMS compares every later candidate with them), the others are dropped when the
    next one is asked for, so memory follows the kept masks only."""

    def __init__(self, candidates: GridCandidates) -> None:
        self._candidates = candidates
        self._kept: dict[int, np.ndarray] = {}
        self._last: tuple[int, np.ndarray] | None = None

    def __call__(self, index: int) -> np.ndarray:
        if index in self._kept:
            return self._kept[index]
        if self._last is None or self._last[0] != index:
            box = self._candidates.boxes_xyxy[index]
            self._last = (index, mask_window(self._candidates, index, box, 0)[2])
        return self._last[1]

    def keep(self, index: int) -> None:
        """Hold mask ``index`` (decoded now if it was not)."""
        self._kept[index] = self(index)


def _overlap(windows: _Windows, boxes: np.ndarray, a: int, b: int) -> int:
    """Pixels shared by masks ``a`` and ``b`` (boxes inclusive (x0, y0, x1, y1))."""
    x0, y0 = max(boxes[a, 0], boxes[b, 0]), max(boxes[a, 1], boxes[b, 1])
    x1, y1 = min(boxes[a, 2], boxes[b, 2]) + 1, min(boxes[a, 3], boxes[b, 3]) + 1
    if x1 <= x0 or y1 <= y0:
        return 0
    first = windows(a)[y0 - boxes[a, 1] : y1 - boxes[a, 1], x0 - boxes[a, 0] : x1 - boxes[a, 0]]
    second = windows(b)[y0 - boxes[b, 1] : y1 - boxes[b, 1], x0 - boxes[b, 0] : x1 - boxes[b, 0]]
    return int(np.count_nonzero(first & second))


def mask_nms(
    candidates: GridCandidates,
    index: np.ndarray,
    threshold: float,
    intersection_over_min: bool = False,
) -> np.ndarray:
    """Greedy NMS on masks (module docstring, step 2).

    Parameters
    ----------
    candidates : GridCandidates
        Masks of the whole plane (crop 0).
    index : numpy.ndarray, (n,) int
        The candidates taking part.
    threshold : float
        A mask overlapping a kept one by more than this is dropped.
    intersection_over_min : bool
        Overlap = intersection / smaller area instead of intersection / union.

    Returns
    -------
    numpy.ndarray, (k,) int64
        The kept candidates, highest score first.
    """
    index = np.asarray(index, np.int64)
    scores = candidates.predicted_iou[index] * candidates.stability_score[index]
    order = index[np.argsort(-scores, kind="stable")]
    boxes, areas = candidates.boxes_xyxy, candidates.area
    windows = _Windows(candidates)
    kept: list[int] = []
    for candidate in order:
        # micro-sam compares boxes that overlap with a positive area (x1 - x0 > 0)
        near = [k for k in kept if _boxes_overlap(boxes[candidate], boxes[k])]
        if all(
            _share(_overlap(windows, boxes, candidate, k), areas[candidate], areas[k],
                   intersection_over_min) <= threshold
            for k in near
        ):  # fmt: skip
            kept.append(int(candidate))
            windows.keep(int(candidate))
    return np.asarray(kept, np.int64)


def _boxes_overlap(first: np.ndarray, second: np.ndarray) -> bool:
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    return width > 0 and height > 0


def _share(shared: int, first_area: int, second_area: int, over_min: bool) -> float:
    if over_min:
        return shared / max(min(first_area, second_area), 1e-6)
    union = first_area + second_area - shared
    return shared / union if union else 0.0


def paint_exclusive(
    candidates: GridCandidates, kept: np.ndarray, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The kept masks as one label image (module docstring, steps 3 and 4).

    Parameters
    ----------
    candidates : GridCandidates
    kept : numpy.ndarray, (k,) int
        Candidates in NMS order (ties in area keep this order).
    min_size : int
        Parts smaller than this are dropped.

    Returns
    -------
    labels : numpy.ndarray, (H, W) int32
        Objects 1..N in scan order of their first pixel.
    source : numpy.ndarray, (N,) int64
        The candidate each object was painted from.
    """
    height, width = candidates.image_hw
    painted = np.zeros((height, width), np.int32)
    by_area = [int(k) for k in sorted(kept, key=lambda k: -int(candidates.area[k]))]
    windows = _Windows(candidates)
    for rank, candidate in enumerate(by_area, start=1):
        x0, y0, x1, y1 = (int(v) for v in candidates.boxes_xyxy[candidate])
        region = painted[y0 : y1 + 1, x0 : x1 + 1]
        region[windows(candidate) & (region == 0)] = rank
    parts = label_parts(painted, background=0, connectivity=1).astype(np.int32)
    count = int(parts.max())
    sizes = np.bincount(parts.ravel(), minlength=count + 1)
    keep = np.flatnonzero(sizes >= min_size)
    keep = keep[keep > 0]
    lookup = np.zeros(count + 1, np.int32)
    lookup[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    ranks = np.asarray(ndimage.maximum(painted, parts, keep), np.int64).reshape(-1)
    source = np.asarray(by_area, np.int64)[ranks - 1] if len(keep) else np.zeros(0, np.int64)
    return lookup[parts], source
