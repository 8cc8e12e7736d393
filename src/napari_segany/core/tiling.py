"""Planes larger than the model's frame, seen as overlapping windows (tiles + halo).

A model sees a plane shrunk into its frame (1024 pixels for SAM, 512 for the built-in
model); on a 4096 x 4096 scan of small nuclei that is 4x to 8x too coarse. Tiling cuts
the plane into *tiles* (cores of ``tile`` pixels, in a grid) and embeds each tile with
a *halo* of ``halo`` pixels around it -- a *window* of ``tile + 2 halo`` pixels, by
default the model's own frame, so a window is seen at full resolution. Windows at the
plane's edges are moved inward to keep their size.

Rules (the API in ``tiling_api.py``):

- a prompt (its points and box) is decoded in the grid window that contains it with
  the widest margin (its centre nearest the window's centre); prompts wider than a
  window get a window of their own around them (embedded shrunk, as a small plane);
- a mask cut by its window's edge (an edge inside the plane) is decoded again in a
  window centred on it, so an object crossing tiles comes back whole (objects wider
  than a window are decoded in a window of their size);
- everything mode runs on every window and keeps, from each, the objects whose centre
  lies in its tile; objects kept by two tiles that overlap (by half the smaller) are
  one object and are merged; the others are painted on free pixels only
  (:func:`stitch`). An object lying inside one window is found as on that window alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import InputError

__all__ = ["Tiling", "Window", "choose_tiling", "stitch", "tile_windows", "window_around"]


@dataclass(frozen=True)
class Window:
    """A part of the plane: its window (embedded) and its tile (owned).

    Attributes
    ----------
    yxyx : (int, int, int, int)
        The window, (y0, x0, y1, x1) with exclusive ends, in plane pixels.
    core_yxyx : (int, int, int, int)
        The tile it owns (everything mode keeps objects centred there).
    """

    yxyx: tuple[int, int, int, int]
    core_yxyx: tuple[int, int, int, int]

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices of the window."""
        y0, x0, y1, x1 = self.yxyx
        return slice(y0, y1), slice(x0, x1)

    @property
    def hw(self) -> tuple[int, int]:
        return self.yxyx[2] - self.yxyx[0], self.yxyx[3] - self.yxyx[1]


@dataclass(frozen=True)
class Tiling:
    """Tile and halo sizes in plane pixels (window = tile + 2 halo)."""

    tile: int
    halo: int

    def __post_init__(self) -> None:
        for name in ("tile", "halo"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value:
                raise InputError(f"tiling {name} must be an integer, got {value!r}.")
        if self.tile < 16 or self.halo < 0:
            raise InputError(
                f"tiling needs tile >= 16 and halo >= 0 pixels, got ({self.tile}, {self.halo})."
            )

    @property
    def window(self) -> int:
        return int(self.tile + 2 * self.halo)


def choose_tiling(setting, frame: int, plane_hw: tuple[int, int]) -> Tiling | None:
    """The tiling a plane gets.

    Parameters
    ----------
    setting : "auto", None or (tile, halo)
        ``"auto"``: tiles of ``frame - 2 halo`` with ``halo = frame // 8`` for planes
        whose long side exceeds twice the frame (shrunk more than 2x untiled); None:
        never; (tile, halo): for planes larger than one window.
    frame : int
        The model's input size.
    plane_hw : (int, int)

    Raises
    ------
    InputError
        On another setting.
    """
    long_side = max(plane_hw)
    if setting is None:
        return None
    if isinstance(setting, str):
        if setting != "auto":
            raise InputError(f"tiling must be 'auto', None or (tile, halo), got {setting!r}.")
        halo = frame // 8
        return Tiling(frame - 2 * halo, halo) if long_side > 2 * frame else None
    try:
        tile, halo = setting
    except (TypeError, ValueError):
        raise InputError(f"tiling must be 'auto', None or (tile, halo), got {setting!r}.") from None
    tiling = Tiling(tile, halo)
    return tiling if long_side > tiling.window else None


def _starts(length: int, tile: int) -> list[int]:
    return [i * tile for i in range(max(1, math.ceil(length / tile)))]


def tile_windows(plane_hw: tuple[int, int], tiling: Tiling) -> list[Window]:
    """The grid's windows, row by row (module docstring)."""
    height, width = plane_hw
    windows = []
    for y in _starts(height, tiling.tile):
        for x in _starts(width, tiling.tile):
            core = (y, x, min(y + tiling.tile, height), min(x + tiling.tile, width))
            windows.append(Window(_placed(core, tiling.window, plane_hw), core))
    return windows


def _placed(region, size: int, plane_hw) -> tuple[int, int, int, int]:
    """A ``size`` x ``size`` window centred on ``region`` (y0, x0, y1, x1), moved inside
    the plane (and cut to it where the plane is smaller)."""
    out = []
    for axis in range(2):
        low, high, length = region[axis], region[axis + 2], plane_hw[axis]
        side = min(max(size, high - low), length)
        start = int(round((low + high) / 2 - side / 2))
        start = min(max(start, 0), length - side)
        out.append((start, start + side))
    (y0, y1), (x0, x1) = out
    return y0, x0, y1, x1


def prompt_region(points_yx: np.ndarray | None, box_yxyx: np.ndarray | None) -> tuple:
    """(y0, x0, y1, x1) around a prompt's points and box."""
    corners = []
    if points_yx is not None and len(points_yx):
        corners.append(np.asarray(points_yx, np.float64).reshape(-1, 2))
    if box_yxyx is not None:
        corners.append(np.asarray(box_yxyx, np.float64).reshape(-1, 2))
    if not corners:
        raise InputError("A prompt needs points or a box.")
    both = np.concatenate(corners)
    low, high = np.floor(both.min(0)), np.ceil(both.max(0)) + 1
    return int(low[0]), int(low[1]), int(high[0]), int(high[1])


def clipped_region(region, plane_hw) -> tuple[int, int, int, int]:
    """``region`` (y0, x0, y1, x1), any numbers, as whole pixels holding it (ends
    rounded up) cut to the plane."""
    y0, x0, y1, x1 = (float(v) for v in region)
    return (max(0, math.floor(y0)), max(0, math.floor(x0)),
            min(int(plane_hw[0]), math.ceil(y1)), min(int(plane_hw[1]), math.ceil(x1)))  # fmt: skip


def window_for(region, windows: list[Window], plane_hw, tiling: Tiling) -> Window:
    """The grid window holding ``region`` with the widest margin, or a window of its
    own around it when none holds it (module docstring)."""
    best, margin = None, -1.0
    for window in windows:
        y0, x0, y1, x1 = window.yxyx
        room = min(region[0] - y0, region[1] - x0, y1 - region[2], x1 - region[3])
        if room >= 0 and room > margin:
            best, margin = window, room
    return best if best is not None else window_around(region, plane_hw, tiling)


def window_around(region, plane_hw, tiling: Tiling) -> Window:
    """A window centred on ``region``, at least a grid window's size, grown by the halo
    where the region is larger."""
    size = max(tiling.window, region[2] - region[0] + 2 * tiling.halo,
               region[3] - region[1] + 2 * tiling.halo)  # fmt: skip
    placed = _placed(region, size, plane_hw)
    return Window(placed, placed)


def cut_sides(mask: np.ndarray, window: Window, plane_hw) -> bool:
    """Whether ``mask`` (the window's (h, w) bool) touches an edge of the window that
    lies inside the plane (the object may go on past it)."""
    y0, x0, y1, x1 = window.yxyx
    edges = [
        (y0 > 0, mask[0, :]),
        (x0 > 0, mask[:, 0]),
        (y1 < plane_hw[0], mask[-1, :]),
        (x1 < plane_hw[1], mask[:, -1]),
    ]
    return any(inside and bool(edge.any()) for inside, edge in edges)


def owned(labels: np.ndarray, window: Window) -> np.ndarray:
    """Ids (of the window's labels) of the objects whose centre lies in its tile."""
    count = int(labels.max())
    if count == 0:
        return np.zeros(0, np.int64)
    ids = np.arange(1, count + 1)
    present = np.bincount(labels.ravel(), minlength=count + 1)[1:] > 0
    ids = ids[present]
    centres = np.asarray(ndimage.center_of_mass(labels > 0, labels, ids)).reshape(-1, 2)
    centres += (window.yxyx[0], window.yxyx[1])
    cy0, cx0, cy1, cx1 = window.core_yxyx
    inside = (centres[:, 0] >= cy0) & (centres[:, 0] < cy1)
    inside &= (centres[:, 1] >= cx0) & (centres[:, 1] < cx1)
    return ids[inside]


def stitch(
    plane_hw: tuple[int, int], parts: list[tuple[Window, np.ndarray]]
) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """The plane's objects from every window's (module docstring).

    Parameters
    ----------
    plane_hw : (int, int)
    parts : list of (Window, (h, w) int labels)
        Each window's objects (0 background).

    Returns
    -------
    labels : numpy.ndarray, (H, W) int32
        Objects 1..N in the order they were first kept.
    sources : list of list of (int, int)
        Per object, the (part index, window id) pieces it was made of.
    """
    labels = np.zeros(plane_hw, np.int32)
    sources: list[list[tuple[int, int]]] = []
    areas = [0]  # painted pixels per object id
    for index, (window, window_labels) in enumerate(parts):
        region = labels[window.slices]
        boxes = ndimage.find_objects(window_labels)
        for object_id in owned(window_labels, window):
            box = boxes[object_id - 1]
            mask = window_labels[box] == object_id
            patch = region[box]
            taken = np.bincount(patch[mask], minlength=len(areas))
            taken[0] = 0
            other = int(taken.argmax())
            free = mask & (patch == 0)
            if other and taken[other] >= 0.5 * min(int(mask.sum()), areas[other]):
                patch[free] = other  # the same object seen by two windows: merged
                areas[other] += int(free.sum())
                sources[other - 1].append((index, int(object_id)))
                continue
            sources.append([(index, int(object_id))])
            areas.append(int(free.sum()))
            patch[free] = len(sources)
    return labels, sources
