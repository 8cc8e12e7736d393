"""Everything mode for the widget: the work done off the Qt thread (no Qt in here).

A run decodes SAM's point grid on one plane, or on every plane, of an image layer (the
expensive phase, with the model) and keeps each plane's grid candidates. Selecting
turns the candidates into label planes with the thresholds (the cheap phase, no model),
at the end of the run and again whenever a threshold changes. Ids are unique across the
planes of a run; with ``link`` an object takes the id of the object it overlaps (IoU >=
0.5) on the previous plane along the last plane axis -- the rules of
:mod:`napari_segany.core.everything_stack`, so the widget's stack equals
``SegAny.segment_everything_stack`` for the same parameters.

Sessions: a ``SegAny`` (planes embedded through its cache, the grid decoded by
:func:`napari_segany.core.automatic.decode_grid` with its predictor), or any object with
``decode_everything(plane, contrast_limits, grid_params)``: a generator of
:class:`Progress` returning candidates with ``select(FilterParams)`` (test doubles).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_segany import _layers
from napari_segany.core.errors import CancelledError, InputError
from napari_segany.core.progress import Progress

GRID_NAMES = ("points_per_side",)
FILTER_NAMES = (
    "pred_iou_thresh",
    "stability_score_thresh",
    "box_nms_thresh",
    "min_mask_region_area",
)
LINK_IOU = 0.5


@dataclass
class Selection:
    """Label planes of a run after the thresholds (stack ids, before any layer offset).

    Attributes
    ----------
    planes : dict
        Plane index -> (H, W) uint32 label plane, 0 = background.
    n_objects : int
        Distinct objects (a linked object counts once).
    warnings : list of str
        Why planes came out empty (which threshold to lower).
    """

    planes: dict[tuple[int, ...], np.ndarray]
    n_objects: int
    warnings: list[str] = field(default_factory=list)


def decode_planes(
    session: Any,
    image: Any,
    indices: Sequence[tuple[int, ...]],
    contrast_limits: Any,
    grid_params: dict,
    filter_params: dict,
    link: bool,
    cancel_event: threading.Event,
) -> Generator[Progress, None, tuple[dict, Selection]]:
    """Worker body of a run: decode the grid on each plane, then select.

    Parameters
    ----------
    session : SegAny or a session with ``decode_everything`` (module docstring)
    image : napari.layers.Image
        Planes are read from it here, in the worker.
    indices : sequence of tuple of int
        Plane indices (``[()]`` for a 2D image), in C order.
    contrast_limits : (float, float) or None
    grid_params, filter_params : dict
        Everything-mode parameters of the two phases.
    link : bool
        Link objects across planes (module docstring).
    cancel_event : threading.Event
        Set to stop (within one encoder block or one decoded batch).

    Yields
    ------
    Progress

    Returns
    -------
    (dict, Selection)
        The candidates of every plane (index -> candidates) and their selection.

    Raises
    ------
    CancelledError
        When ``cancel_event`` is set.
    InputError
        On invalid parameters, or a session without everything mode.
    """
    from napari_segany.core.automatic import everything_params

    grid, _ = everything_params(**grid_params)
    candidates = {}
    for number, index in enumerate(indices):
        plane = _layers.get_plane(image, index)
        steps = _decode_plane(session, plane, contrast_limits, grid, cancel_event)
        candidates[index] = yield from _scaled(steps, number, len(indices), index, cancel_event)
    yield Progress(len(indices), len(indices), "selecting masks")
    return candidates, select_planes(candidates, filter_params, link)


def _decode_plane(session: Any, plane: np.ndarray, limits: Any, grid: Any, cancel_event: Any):
    """Generator of Progress returning one plane's grid candidates."""
    own = getattr(session, "decode_everything", None)
    if own is not None:
        return (yield from own(plane, limits, grid))
    if getattr(session, "predictor", None) is None:
        raise InputError(
            f"{session!r} has no everything mode; load a SAM model (Load model) first."
        )
    from napari_segany.core.automatic import decode_grid
    from napari_segany.core.cancel import image_encoder_of, stop_on
    from napari_segany.core.image import to_model_rgb

    yield Progress(0, 1, "embedding")
    with stop_on(image_encoder_of(session), cancel_event):
        embedding = session.embed(plane, contrast_limits=limits)
    # the plane as the model sees it: the head's zoomed tiles and second view are cut
    # from it (as SegAny.segment_everything does)
    rgb = to_model_rgb(plane, contrast_limits=limits)
    return (yield from decode_grid(session.predictor, rgb, grid, embedding))


def _scaled(steps, number: int, count: int, index: tuple, cancel_event: threading.Event):
    """Re-emit a plane's progress as progress of the run; stop on cancel; return the result."""
    where = f"plane {index}: " if index else ""
    while True:
        if cancel_event.is_set():
            steps.close()
            raise CancelledError("Everything mode was cancelled; nothing was changed.")
        try:
            report = next(steps)
        except StopIteration as stop:
            return stop.value
        total = max(report.total, 1)
        done = number * total + min(report.done, total)
        yield Progress(done, count * total, f"{where}{report.message}")


def select_planes(candidates: dict, filter_params: dict, link: bool) -> Selection:
    """The cheap phase for every plane of a run: thresholds, ids unique across planes.

    Parameters
    ----------
    candidates : dict
        Plane index -> grid candidates (``select(FilterParams)``), in C order.
    filter_params : dict
        ``pred_iou_thresh``, ``stability_score_thresh``, ``box_nms_thresh``,
        ``min_mask_region_area`` (others default).
    link : bool
        Link objects along the last plane axis.
    """
    from napari_segany.core.automatic import everything_params
    from napari_segany.core.everything_select import EmptyResultWarning
    from napari_segany.core.labels import StackNumbering

    _, filters = everything_params(**filter_params)
    planes, notes, ids = {}, [], set()
    numbering = StackNumbering(LINK_IOU, link)
    for index, plane_candidates in candidates.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EmptyResultWarning)
            result = plane_candidates.select(filters)
        notes += [f"{f'plane {index}: ' if index else ''}{w.message}" for w in caught]
        continues = bool(index) and index[-1] > 0
        planes[index], mapping = numbering.number(
            result.labels, [o.label for o in result.objects], continues
        )
        ids.update(mapping.values())
    return Selection(planes, len(ids), notes)
