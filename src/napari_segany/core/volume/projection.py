"""Projection: an object's mask on one slice prompts the next slice (every model).

From the previous slice's mask the next slice gets a prompt
(:attr:`ProjectionRules.prompt`): ``"point"`` (the default), one positive point at the
mask's most interior pixel; ``"box"``, the mask's box grown by ``box_margin``;
``"point_and_box"``, both. One mask is asked for. Measured with the built-in model on
generated 3D nuclei (``training/evaluate_volume.py``, seeds 10-12 / 0-2, 30 nuclei
each), mean 3D IoU: point 0.606 / 0.562, box 0.573 / -, point and box 0.542 / 0.544
(the built-in model snaps a click to the object under it; a box lets it reach
neighbours). SAM
weights could not be measured here (none can be downloaded); for them try ``"box"``
(``volume.rules = ProjectionRules(prompt="box")``). The object goes on while the new mask passes
:func:`continues`: a score, an area and an overlap rule (an object ends where the
model finds nothing convincing under it, or jumps to a neighbour):

- predicted IoU at least ``min_score``;
- area at least ``min_area_ratio`` of the previous slice's, and at least ``min_area``
  pixels;
- at least ``min_inside`` of the new mask inside the previous mask grown by its box
  margin (a nucleus narrows towards its poles, so a new mask lies mostly inside the
  last one; a jump to a neighbour does not);
- not grown again: once the object's area has fallen below ``1 / regrow`` of the
  largest it had in the walk (past its widest slice), an area above ``regrow`` times
  the smallest since then ends it (a nucleus or cell is widest once along z; growing
  again means the next object above or below; a walk from a pole towards the widest
  slice is not affected). With the rule (1.3) against without, mean 3D IoU 0.525 /
  0.520 (seeds 0-5), 0.618 / 0.606 (seeds 10-12), and clicked a quarter of the way
  along each nucleus 0.525 / 0.520 (seeds 0-5);
- IoU with the previous slice's mask at least ``min_iou`` (a neighbour right above or
  below an ending object differs in size and place). 0.6 against 0.5, mean 3D IoU:
  with point and box 0.544 / 0.512 (seeds 0-2, where it was chosen) and 0.542 / 0.509
  (seeds 10-12); with the point alone 0.520 / 0.506 (seeds 0-5) and 0.606 / 0.589
  (seeds 10-12).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..depth import deepest_pixel
from ..errors import InputError

__all__ = ["PROMPTS", "ProjectionRules", "continues", "projected_prompt"]

PROMPTS = ("point", "box", "point_and_box")


@dataclass(frozen=True)
class ProjectionRules:
    """When a projected object goes on (module docstring)."""

    prompt: str = "point"
    box_margin: float = 0.15
    min_score: float = 0.5
    min_area_ratio: float = 0.2
    min_area: int = 4
    min_inside: float = 0.6
    min_iou: float = 0.6
    regrow: float = 1.3  # 0: no such rule

    def __post_init__(self) -> None:
        if self.prompt not in PROMPTS:
            raise InputError(f"prompt must be one of {PROMPTS}, got {self.prompt!r}.")


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
    ``points_yx`` (1, 2) and ``labels`` (1,), and/or ``box_yxyx`` (4,), as
    ``rules.prompt`` says (None for what it leaves out)."""
    prompt = {"points_yx": None, "labels": None, "box_yxyx": None}
    if rules.prompt != "box":
        point, _ = deepest_pixel(previous)
        prompt["points_yx"], prompt["labels"] = np.array([point], np.float64), np.array([1])
    if rules.prompt != "point":
        prompt["box_yxyx"] = _box(previous, rules.box_margin)
    return prompt


def continues(
    mask: np.ndarray,
    score: float,
    previous: np.ndarray,
    rules: ProjectionRules,
    trough: int | None = None,
) -> bool:
    """Whether ``mask`` (H, W) bool, predicted with ``score`` from ``previous``'s
    projection, still shows the object (module docstring). ``trough``: the smallest
    area since the walk passed the object's widest slice (None before that)."""
    area, previous_area = int(mask.sum()), int(previous.sum())
    if score < rules.min_score or area < max(rules.min_area, rules.min_area_ratio * previous_area):
        return False
    if trough is not None and area > rules.regrow * trough:
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
