"""Projection: an object's mask on one slice prompts the next slice (every model).

From the previous slice's mask the next slice gets one positive point at the mask's
most interior pixel and the mask's box grown by :attr:`ProjectionRules.box_margin`;
one mask is asked for. The object goes on while the new mask passes
:func:`continues`: a score, an area and an overlap rule (an object ends where the
model finds nothing convincing under it, or jumps to a neighbour):

- predicted IoU at least ``min_score``;
- area at least ``min_area_ratio`` of the previous slice's, and at least ``min_area``
  pixels;
- at least ``min_inside`` of the new mask inside the previous mask grown by its box
  margin (a nucleus narrows towards its poles, so a new mask lies mostly inside the
  last one; a jump to a neighbour does not);
- IoU with the previous slice's mask at least ``min_iou`` (a neighbour right above or
  below an ending object differs in size and place).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["ProjectionRules", "continues", "projected_prompt"]


@dataclass(frozen=True)
class ProjectionRules:
    """When a projected object goes on (module docstring)."""

    box_margin: float = 0.15
    min_score: float = 0.5
    min_area_ratio: float = 0.2
    min_area: int = 4
    min_inside: float = 0.6
    min_iou: float = 0.5


def _box(mask: np.ndarray, margin: float) -> np.ndarray:
    """(y0, x0, y1, x1) of a non-empty mask, grown by ``margin`` of its size (>= 2 px)
    on every side and clipped to the slice; end coordinates exclusive."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    height, width = rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]
    grow_y, grow_x = max(2.0, margin * height), max(2.0, margin * width)
    return np.array(
        [
            max(rows[0] - grow_y, 0.0),
            max(cols[0] - grow_x, 0.0),
            min(rows[-1] + 1 + grow_y, mask.shape[0]),
            min(cols[-1] + 1 + grow_x, mask.shape[1]),
        ]
    )


def projected_prompt(previous: np.ndarray, rules: ProjectionRules) -> dict:
    """The next slice's prompt from the previous slice's (H, W) bool mask (non-empty):
    ``points_yx`` (1, 2), ``labels`` (1,), ``box_yxyx`` (4,)."""
    depth = ndimage.distance_transform_edt(np.pad(previous, 1))[1:-1, 1:-1]
    point = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return {
        "points_yx": np.array([point], dtype=np.float64),
        "labels": np.array([1]),
        "box_yxyx": _box(previous, rules.box_margin),
    }


def continues(mask: np.ndarray, score: float, previous: np.ndarray, rules: ProjectionRules) -> bool:
    """Whether ``mask`` (H, W) bool, predicted with ``score`` from ``previous``'s
    projection, still shows the object (module docstring)."""
    area, previous_area = int(mask.sum()), int(previous.sum())
    if score < rules.min_score or area < max(rules.min_area, rules.min_area_ratio * previous_area):
        return False
    y0, x0, y1, x1 = (int(round(v)) for v in _box(previous, rules.box_margin))
    grown = np.zeros_like(previous)
    grown[y0:y1, x0:x1] = ndimage.binary_dilation(
        previous[y0:y1, x0:x1], iterations=max(1, int(rules.box_margin * min(y1 - y0, x1 - x0)))
    )
    if np.count_nonzero(mask & grown) < rules.min_inside * area:
        return False
    overlap = np.count_nonzero(mask & previous)
    return overlap >= rules.min_iou * (area + previous_area - overlap)
