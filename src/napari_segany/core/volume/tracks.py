"""An object through a stack: its masks per slice, where each came from.

A :class:`Track` holds one object's prompts (the slices a user clicked: *anchors*) and
its mask on every slice it reaches, each stored cropped to its box
(:class:`SliceMask`: a 200-slice track of a 40-pixel nucleus is kilobytes, not the
stack's size). A propagated mask records the anchor it was propagated from, so a
correction knows which slices it may replace (:mod:`.propagation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SliceMask", "SlicePrompt", "Track", "paint_slice"]


@dataclass(frozen=True)
class SliceMask:
    """One slice's mask, cropped to its box.

    Attributes
    ----------
    top_left_yx : (int, int)
        Where the crop starts in the slice.
    crop : numpy.ndarray, (h, w) bool
    score : float
        The model's predicted IoU of the mask.
    anchor : int or None
        The prompted slice it was propagated from; None: prompted on this slice.
    version : int
        The anchor's version (:attr:`Track.versions`) it was propagated from.
    """

    top_left_yx: tuple[int, int]
    crop: np.ndarray
    score: float
    anchor: int | None = None
    version: int = 0

    @classmethod
    def of(
        cls, mask: np.ndarray, score: float, anchor: int | None = None, version: int = 0
    ) -> SliceMask:
        """Crop an (H, W) bool mask to its box (an empty mask keeps a 0 x 0 crop)."""
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows.size == 0:
            return cls((0, 0), np.zeros((0, 0), bool), float(score), anchor, version)
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = mask[y0:y1, x0:x1].copy()
        return cls((int(y0), int(x0)), crop, float(score), anchor, version)

    @property
    def area(self) -> int:
        return int(self.crop.sum())

    def full(self, hw: tuple[int, int]) -> np.ndarray:
        """The (H, W) bool mask."""
        mask = np.zeros(hw, bool)
        y0, x0 = self.top_left_yx
        mask[y0 : y0 + self.crop.shape[0], x0 : x0 + self.crop.shape[1]] = self.crop
        return mask


@dataclass(frozen=True)
class SlicePrompt:
    """What a user gave on one slice: points (P, 2) as (y, x) with labels (P,), and/or a
    box (y0, x0, y1, x1)."""

    points_yx: np.ndarray | None
    labels: np.ndarray | None
    box_yxyx: np.ndarray | None


@dataclass
class Track:
    """One object through the stack.

    Attributes
    ----------
    obj_id : int
        Its label value.
    prompts : dict of int to SlicePrompt
        The anchors: slices prompted by the user.
    masks : dict of int to SliceMask
        Its mask on every slice it was found on.
    stale : set of (int, int)
        (anchor, step) walks still to do: the anchor changed since its last walk in
        direction ``step`` (+1 or -1), or that walk was cancelled.
    versions : dict of int to int
        How many times each anchor was prompted (a walk resumes over its own masks of
        the current version, and re-walks over older ones).
    """

    obj_id: int
    prompts: dict[int, SlicePrompt] = field(default_factory=dict)
    masks: dict[int, SliceMask] = field(default_factory=dict)
    stale: set[tuple[int, int]] = field(default_factory=set)
    versions: dict[int, int] = field(default_factory=dict)

    def owner_distance(self, index: int) -> int | None:
        """How far the stored mask of slice ``index`` is from its anchor (0 for an
        anchor), None when the slice holds no mask."""
        stored = self.masks.get(index)
        if stored is None:
            return None
        return 0 if stored.anchor is None else abs(index - stored.anchor)


def paint_slice(tracks: list[Track], index: int, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) uint32 labels of one slice: every track's mask there, painted in order of
    increasing score so that where two objects overlap the higher-scored one wins (a
    prompted slice counts as score + 1: what the user clicked stays)."""
    labels = np.zeros(hw, np.uint32)
    entries = []
    for track in tracks:
        stored = track.masks.get(index)
        if stored is not None and stored.area:
            bonus = 1.0 if stored.anchor is None else 0.0
            entries.append((stored.score + bonus, track.obj_id, stored))
    for _, obj_id, stored in sorted(entries, key=lambda entry: (entry[0], entry[1])):
        y0, x0 = stored.top_left_yx
        window = labels[y0 : y0 + stored.crop.shape[0], x0 : x0 + stored.crop.shape[1]]
        window[stored.crop] = obj_id
    return labels
