"""Walking an object from its prompted slices through the stack, by projection.

From each anchor (a prompted slice) a walk goes one slice at a time in one direction
(step +1 or -1), prompting each slice from the last mask (:mod:`.projection`), and
ends where the object ends (:func:`.projection.continues`), at the stack's end, at
another anchor of the object, or at a slice that a walk from another anchor at least
as near has reached. A walk that ends because the object ended clears what older
walks of farther anchors had left beyond.

A correction (a new or changed anchor) re-walks outward from it and stops early
where its mask equals the stored one (IoU >= :data:`UNCHANGED_IOU`): the projection is
deterministic, so from there on the result would not change. A walk that was cancelled
resumes: slices it already stored for the anchor's current version are taken as they
are, without the model.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from .projection import ProjectionRules, continues, projected_prompt
from .tracks import SliceMask, Track

__all__ = ["UNCHANGED_IOU", "Predict", "walk"]

UNCHANGED_IOU = 0.98

# (slice index, prompt keywords) -> ((H, W) bool mask, predicted IoU)
Predict = Callable[[int, dict], tuple[np.ndarray, float]]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def _owned_elsewhere(track: Track, index: int, anchor: int) -> bool:
    """Whether slice ``index`` holds a mask from another anchor at least as near."""
    stored = track.masks.get(index)
    if stored is None or stored.anchor == anchor:
        return False
    return track.owner_distance(index) <= abs(index - anchor)


def _clear_beyond(track: Track, index: int, step: int, anchor: int, count: int) -> None:
    """Drop masks from ``index`` on (direction ``step``) that this side's older walks
    left, up to an anchor or a slice a nearer anchor owns."""
    while 0 <= index < count and index not in track.prompts:
        if index in track.masks:
            if _owned_elsewhere(track, index, anchor):
                return
            del track.masks[index]
        index += step


class _Areas:
    """The object's areas along a walk: its largest so far, and the smallest since."""

    def __init__(self, first: int, regrow: float) -> None:
        self.peak, self.low, self.regrow = first, first, regrow

    def add(self, area: int) -> None:
        if area > self.peak:
            self.peak = self.low = area
        else:
            self.low = min(self.low, area)

    def trough(self) -> int | None:
        """The smallest area since the widest slice, once it is below 1 / regrow of it
        (the walk is past the object's widest slice); else None."""
        past_widest = self.regrow > 0 and self.regrow * self.low < self.peak
        return self.low if past_widest else None


def walk(
    track: Track,
    anchor: int,
    step: int,
    count: int,
    hw: tuple[int, int],
    predict: Predict,
    rules: ProjectionRules,
    reach: int | None = None,
) -> Generator[int, None, None]:
    """Propagate ``track`` from ``anchor`` in direction ``step`` through a stack of
    ``count`` slices, at most ``reach`` slices away (None: to the end); yields each
    slice index once its mask is stored (module docstring). A slice's mask is stored
    whole or not at all."""
    previous, version = track.masks[anchor].full(hw), track.versions.get(anchor, 0)
    index = anchor + step
    far = count if reach is None else reach + 1  # slices away it may not reach
    low, high = max(0, anchor - far + 1), min(count, anchor + far)
    areas = _Areas(int(previous.sum()), rules.regrow)
    while previous.any() and low <= index < high and index not in track.prompts:
        stored = track.masks.get(index)
        if stored is not None and (stored.anchor, stored.version) == (anchor, version):
            previous, index = stored.full(hw), index + step  # done before a cancel
            areas.add(stored.area)
            yield index - step
            continue
        if _owned_elsewhere(track, index, anchor):
            return
        mask, score = predict(index, projected_prompt(previous, rules))
        if not continues(mask, score, previous, rules, areas.trough()):
            _clear_beyond(track, index, step, anchor, count)
            return
        unchanged = stored is not None and _iou(stored.full(hw), mask) >= UNCHANGED_IOU
        track.masks[index] = SliceMask.of(mask, score, anchor, version)
        yield index
        if unchanged:
            return
        previous, index = mask, index + step
        areas.add(int(mask.sum()))
