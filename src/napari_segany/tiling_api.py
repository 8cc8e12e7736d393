"""Planes larger than the model's frame in a :class:`~napari_segany.api.SegAny` session.

:class:`TilingMethods` (mixed into ``SegAny``) holds the session's ``tiling`` and its
*tiled plane*: ``set_image`` of a plane above the tiling's threshold keeps the plane
(numpy, dask, zarr: read one window at a time) and embeds nothing; a prompt embeds the
window it needs (``core.tiling``: the grid window holding it, or one around it; a mask
cut by its window is decoded again in a window centred on it), and its masks land in
plane coordinates; everything mode runs window by window and stitches
(``core.everything.tiled``).

Inside :meth:`TilingMethods.without_embedding` (on the calling thread only) a prompt
embeds nothing: one that needs a window not yet embedded notes it and raises
``WindowNotPrepared``; ``prepare(plane, region_yxyx=...)`` then embeds the noted
windows that hold the region too, and says the region is not ready until they are. So
the widget embeds only in its background worker, even when a mask cut by its window
asks for a window centred on it. A noted window that a prepare of the plane passed by
without embedding it (its region and the prompt's disagree) is embedded where it is
needed, so no prompt waits forever.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .core.errors import PromptError, WindowNotPrepared
from .core.image import robust_limits, validate_plane
from .core.results import SegmentResult
from .core.tiling import (
    Tiling,
    Window,
    choose_tiling,
    clipped_region,
    cut_sides,
    prompt_region,
    tile_windows,
    window_around,
    window_for,
)

__all__ = ["TiledPlane", "TilingMethods", "WindowNotes"]

_LIMIT_SAMPLE = 2048  # pixels per side of the sample the plane's contrast comes from
_NOTED_WINDOWS = 8  # windows a prompt asked for, remembered for prepare()


@dataclass
class TiledPlane:
    """A plane the session sees window by window.

    Attributes
    ----------
    image : array-like
        The plane as given (spatial axes and, optionally, a channel axis).
    hw : (int, int)
    reading : (contrast_limits, channels, channel_axis)
        Every window is read with these (limits fixed for the whole plane).
    tiling : Tiling
    windows : list of Window
        The grid.
    window : Window or None
        The window whose embedding is current.
    """

    image: Any
    hw: tuple[int, int]
    reading: tuple
    tiling: Tiling
    windows: list[Window]
    window: Window | None = None

    def pixels(self, window: Window) -> np.ndarray:
        """The window's pixels, read now (the rest of the plane is not)."""
        return read_window(self.image, self.reading[2], window)


def _spatial(ndim: int, channel_axis: int | None) -> list[int]:
    if ndim == 2:
        return [0, 1]
    channel = 2 if channel_axis is None else channel_axis % ndim
    return [axis for axis in range(ndim) if axis != channel]


def _slicer(ndim: int, channel_axis: int | None, spatial: tuple) -> tuple:
    index = [slice(None)] * ndim
    for axis, part in zip(_spatial(ndim, channel_axis), spatial):
        index[axis] = part
    return tuple(index)


def plane_hw(image: Any, channel_axis: int | None) -> tuple[int, int]:
    """(H, W) of a plane with or without a channel axis."""
    shape = image.shape
    return tuple(int(shape[a]) for a in _spatial(len(shape), channel_axis))


def read_window(image: Any, channel_axis: int | None, window: Window) -> np.ndarray:
    """A window of a plane (numpy, dask, zarr), read now, channels kept."""
    return np.asarray(image[_slicer(image.ndim, channel_axis, window.slices)])


def plane_limits(image, channels, channel_axis) -> Any:
    """The contrast limits a whole plane is read with when none are given (as for an
    untiled plane: robust limits per used channel), from a strided sample of at most
    :data:`_LIMIT_SAMPLE` pixels per side; None for uint8 and bool planes."""
    if np.dtype(image.dtype) in (np.uint8, np.bool_):
        return None
    step = max(1, int(np.ceil(max(plane_hw(image, channel_axis)) / _LIMIT_SAMPLE)))
    sample = np.asarray(image[_slicer(image.ndim, channel_axis, (slice(None, None, step),) * 2)])
    array = validate_plane(sample, None, channels, channel_axis)
    limits = np.array([robust_limits(array[:, :, c]) for c in range(array.shape[2])])
    limits[:, 1] = np.maximum(limits[:, 1], limits[:, 0] + 1e-6)  # a constant plane
    return limits


class WindowNotes:
    """The windows prompts asked for inside ``without_embedding`` (module docstring),
    shared by the prompting thread and the preparing one.

    A note: (plane (H, W), window yxyx) -> (the prompt's region, whether a prepare of
    that region which knew the note has passed it by without embedding it); at most
    :data:`_NOTED_WINDOWS`, oldest dropped. ``local.deferring``: this thread's
    ``without_embedding`` flag.
    """

    def __init__(self) -> None:
        self.local = threading.local()
        self._notes: dict[tuple, tuple[tuple, bool]] = {}
        self._lock = threading.Lock()

    def note(self, hw, window: Window, region) -> bool:
        """Note a window the prompt of ``region`` needs; False when a prepare of that
        region passed it by (then the prompt embeds it itself)."""
        entry = (tuple(hw), window.yxyx)
        with self._lock:
            if entry in self._notes and self._notes[entry][1]:
                return False
            self._notes[entry] = (tuple(region), False)
            while len(self._notes) > _NOTED_WINDOWS:
                del self._notes[next(iter(self._notes))]
        return True

    def holding(self, hw, region) -> tuple[list[Window], set]:
        """The noted windows of an (H, W) plane that hold ``region`` (clipped to the
        plane), and every note seen (for :meth:`prepared`)."""
        y0, x0 = region[0], region[1]
        y1, x1 = min(region[2], hw[0]), min(region[3], hw[1])
        with self._lock:
            seen = set(self._notes)
        windows = [
            Window(yxyx, yxyx)
            for plane, yxyx in seen
            if plane == tuple(hw) and yxyx[0] <= y0 and yxyx[1] <= x0
            and yxyx[2] >= y1 and yxyx[3] >= x1
        ]  # fmt: skip
        return windows, seen

    def prepared(self, hw, region, windows: list[Window], seen: set) -> None:
        """A prepare of ``region`` on an (H, W) plane embedded ``windows``: forget
        them; the notes it saw for the same region and did not embed are passed by."""
        done = {(tuple(hw), window.yxyx) for window in windows}
        with self._lock:
            for entry in seen & set(self._notes):
                if entry in done:
                    del self._notes[entry]
                elif self._notes[entry][0] == tuple(region):
                    self._notes[entry] = (tuple(region), True)


class TilingMethods:
    """Tiled planes of a session (module docstring; mixed into ``SegAny``)."""

    _tiling_setting: Any = "auto"
    _big: TiledPlane | None = None
    _window_notes: WindowNotes  # made by SegAny's setup
    predictor: Any
    _segment_plane: Callable[..., SegmentResult]  # SegAny's segment of one window
    _set_plane: Callable[..., Any]  # SegAny's set_image of one window
    _prepare_plane: Callable[..., Any]  # SegAny's prepare of one window

    @property
    def tiling(self) -> Any:
        """``"auto"`` (default), None or (tile, halo) in pixels (``core.tiling``):
        ``"auto"`` tiles planes longer than twice the model's frame, into windows of
        the frame's size (tile = 3/4 of it, halo = 1/8 each side)."""
        return self._tiling_setting

    @tiling.setter
    def tiling(self, setting: Any) -> None:
        choose_tiling(setting, self.predictor.model.image_size, (1, 1))  # validates
        self._tiling_setting = setting if setting is None or isinstance(setting, str) else (
            int(setting[0]), int(setting[1]))  # fmt: skip

    @property
    def tiled(self) -> TiledPlane | None:
        """The current plane when it is seen window by window, else None."""
        return self._big

    def tiling_of(self, image: Any, channel_axis: int | None = None) -> Tiling | None:
        """The tiling ``image`` gets in this session (None: one pass)."""
        if len(getattr(image, "shape", ())) not in (2, 3):
            return None
        hw = plane_hw(image, channel_axis)
        return choose_tiling(self._tiling_setting, self.predictor.model.image_size, hw)

    def _set_tiled(self, image, contrast_limits, channels, channel_axis, tiling) -> None:
        """Make ``image`` the current plane, seen window by window (nothing embedded)."""
        hw = plane_hw(image, channel_axis)
        if contrast_limits is None:
            contrast_limits = plane_limits(image, channels, channel_axis)
        reading = (contrast_limits, channels, channel_axis)
        self._big = TiledPlane(image, hw, reading, tiling, tile_windows(hw, tiling))

    def _use_window(self, window: Window, pixels=None, embedding=None) -> None:
        """Embed ``window`` (through the cache and the store) and make it current;
        ``pixels`` and ``embedding``: the window's, when read and found already."""
        big = self._big
        pixels = big.pixels(window) if pixels is None else pixels
        self._set_plane(pixels, *big.reading, embedding)
        big.window = window

    def _prepare_tiled(self, image, reading: tuple, tiling: Tiling, region, refine, run):
        """:meth:`prepare` of a tiled plane: the window of ``region`` (a prompt's
        (y0, x0, y1, x1), as ``core.tiling.prompt_region`` gives it) and the windows
        noted by prompts that hold it, or nothing without a region. Returns the first
        window's embedding; with ``run=False`` None unless every one of them is ready."""
        if region is None:
            return None
        limits, channels, channel_axis = reading
        if limits is None:
            limits = plane_limits(image, channels, channel_axis)
        hw = plane_hw(image, channel_axis)
        region = tuple(int(v) for v in region)
        window = window_for(region, tile_windows(hw, tiling), hw, tiling)
        noted, seen = self._window_notes.holding(hw, region)
        first = None
        for each in [window, *noted]:
            pixels = read_window(image, channel_axis, each)
            found = self._prepare_plane(
                pixels, limits, channels, channel_axis, refine=refine, run=run
            )
            if found is None:
                return None
            first = found if first is None else first
        if run:
            self._window_notes.prepared(hw, region, noted, seen)
        return first

    @contextlib.contextmanager
    def without_embedding(self) -> Iterator[None]:
        """A block whose prompts (on this thread) embed no window of a tiled plane: a
        prompt that needs one not embedded yet raises ``WindowNotPrepared`` and
        :meth:`prepare` of its region embeds it (module docstring). Planes seen in one
        pass are not affected."""
        local = self._window_notes.local
        before = getattr(local, "deferring", False)
        local.deferring = True
        try:
            yield
        finally:
            local.deferring = before

    def _ensure_ready(self, window: Window, region) -> tuple[np.ndarray | None, Any]:
        """Inside :meth:`without_embedding`: the window's (pixels, embedding) when it is
        embedded; else ``WindowNotPrepared`` after noting it, except for a window that
        a prepare after its note passed by (the prompt's region and the prepared one
        disagree): that one is embedded here rather than asked for forever. Outside the
        block (None, None): the caller reads and embeds."""
        notes = self._window_notes
        if not getattr(notes.local, "deferring", False):
            return None, None
        big = self._big
        pixels = big.pixels(window)
        found = self._prepare_plane(pixels, *big.reading, refine=True, run=False)
        if found is not None or not notes.note(big.hw, window, region):
            return pixels, found
        raise WindowNotPrepared(
            f"The prompt needs the window {window.yxyx} of the plane, not embedded yet: "
            "prepare(plane, region_yxyx=...) of the prompt's region embeds it; then "
            "prompt again."
        )

    def focus_window(self, region_yxyx) -> tuple[int, int, int, int] | None:
        """Make the window of the tiled plane that holds ``region_yxyx`` current.

        The window is the grid window holding the region with the widest margin, or
        one around it (as large as the region and its halo: a large region is seen
        scaled down). :attr:`current` is then the window's, and a prompt with
        ``mask_input`` is decoded in it: logits made for that window's frame, e.g. an
        existing object's mask cropped to the window (curation's corrections).

        Parameters
        ----------
        region_yxyx : (4,) numbers
            (y0, x0, y1, x1) in plane pixels, end-exclusive; clipped to the plane.

        Returns
        -------
        (int, int, int, int) or None
            The window's (y0, x0, y1, x1) in plane pixels; None on a plane seen in one
            pass (the whole plane is current).

        Raises
        ------
        PromptError
            On a region outside the plane.
        WindowNotPrepared
            Inside :meth:`without_embedding`, for a window not embedded yet (noted:
            ``prepare`` of a region it holds embeds it).
        """
        big = self._big
        if big is None:
            return None
        _check_inside(tuple(float(v) for v in region_yxyx), big.hw)
        region = clipped_region(region_yxyx, big.hw)
        window = window_for(region, big.windows, big.hw, big.tiling)
        self._use_window(window, *self._ensure_ready(window, region))
        return window.yxyx

    def _decode_tiled(self, image, limits, channels, channel_axis, tiling, mode, params):
        """Everything mode's phase 1 on a tiled plane: every window, as a plane of its
        own read with the whole plane's contrast limits (``core.everything.tiled``)."""
        from .core.everything.tiled import decode_tiled

        if limits is None:
            limits = plane_limits(image, channels, channel_axis)
        hw = plane_hw(image, channel_axis)

        def read(window: Window) -> np.ndarray:
            return read_window(image, channel_axis, window)

        def one(pixels: np.ndarray):
            return self.decode_everything(pixels, limits, channels, mode, channel_axis, **params)

        return (yield from decode_tiled(hw, tile_windows(hw, tiling), read, one))

    def _segment_tiled(
        self, points_yx, labels, box_yxyx, mask_input, multimask: bool
    ) -> SegmentResult:
        """:meth:`segment` on the tiled plane (module docstring)."""
        big = self._big
        region = prompt_region(points_yx, box_yxyx)
        _check_inside(region, big.hw)
        ready = None, None
        if mask_input is not None and big.window is not None:
            window = big.window  # the logits are the last window's
        else:
            window = window_for(region, big.windows, big.hw, big.tiling)
            ready = self._ensure_ready(window, region)
        prompt = (points_yx, labels, box_yxyx)
        result = self._in_window(window, *prompt, mask_input, multimask, ready)
        best = int(np.argmax(result.scores.reshape(-1)))
        mask = result.masks.reshape(-1, *result.masks.shape[-2:])[best]
        if mask_input is None and cut_sides(mask, window, big.hw):
            rows, cols = np.nonzero(mask)
            y0, x0 = window.yxyx[:2]
            grown = (y0 + rows.min(), x0 + cols.min(), y0 + rows.max() + 1, x0 + cols.max() + 1)
            union = tuple(min(a, b) for a, b in zip(grown[:2], region[:2])) + tuple(
                max(a, b) for a, b in zip(grown[2:], region[2:]))  # fmt: skip
            window = window_around(union, big.hw, big.tiling)
            ready = self._ensure_ready(window, region)
            result = self._in_window(window, *prompt, None, multimask, ready)
        return _in_plane(result, window, big.hw)

    def _in_window(self, window, points_yx, labels, box_yxyx, mask_input, multimask, ready):
        if self._big.window != window or self._current is None:  # else current already
            self._use_window(window, *ready)
        y0, x0 = window.yxyx[:2]
        points = None if points_yx is None else np.asarray(points_yx, np.float64) - (y0, x0)
        box = None if box_yxyx is None else np.asarray(box_yxyx, np.float64) - (y0, x0, y0, x0)
        return self._segment_plane(points, labels, box, mask_input, multimask)


def _check_inside(region, hw) -> None:
    if region[0] < 0 or region[1] < 0 or region[2] > hw[0] + 1 or region[3] > hw[1] + 1:
        raise PromptError(f"The prompt lies outside the {hw[0]} x {hw[1]} plane.")


def _in_plane(result: SegmentResult, window: Window, hw: tuple[int, int]) -> SegmentResult:
    """``result`` (of a window) with its masks placed in the (H, W) plane."""
    from dataclasses import replace

    masks = np.zeros((*result.masks.shape[:-2], *hw), bool)
    masks[(...,) + window.slices] = result.masks
    return replace(result, masks=masks)
