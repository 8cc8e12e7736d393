"""Everything mode over every plane of an nD stack, with ids unique in the stack.

One loop serves the API (:func:`segment_everything_stack`), the command line and the
widget (which keeps each plane's candidates to select again with other thresholds,
:func:`select_planes`): :func:`run_planes`. Planes are visited in C order of their
index along the plane axes (see :mod:`napari_segany.core.stack`). With ``link=True``,
objects are linked along the *last* plane axis (Z of ZYX or TZYX, T of TYX): an object
overlapping an object of the previous plane along that axis with IoU >= ``link_iou``
(one-to-one, best first) takes its id, so one object keeps one id through the stack.
With a ``carry`` (linking by propagation, ``core.volume.carry``), the previous plane's
objects are first carried onto the plane by the model and the plane's objects link
to those instead.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import CancelledError, SmallObjectsWarning
from ..labels import LABEL_DTYPE, StackNumbering
from ..progress import Progress
from ..stack import get_plane, plane_axes, plane_indices
from .candidates import GridCandidates
from .selection import EmptyResultWarning, EverythingObject, FilterParams

LINK_IOU = 0.5
PlaneIndex = tuple[int, ...]
PHASE2_WARNINGS = (EmptyResultWarning, SmallObjectsWarning)  # shown for every plane
# plane (H, W[, C]) -> phase 1 of everything mode on it, as a generator of progress
PlaneDecoder = Callable[[np.ndarray], Generator[Progress, None, GridCandidates]]
# (previous plane's stack labels, this plane's pixels) -> those objects found on this plane
Carry = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class StackResult:
    """Everything mode on a stack.

    Attributes
    ----------
    labels : numpy.ndarray, uint32
        The stack's shape without its channel axis; ids unique across planes (shared
        by linked objects).
    objects : list of EverythingObject
        Every object of every plane, with ``plane`` set and ``label`` the stack id.
    """

    labels: np.ndarray
    objects: list[EverythingObject]


@dataclass
class PlaneSelection:
    """Selected objects of the planes of one run, numbered across the stack.

    Attributes
    ----------
    planes : dict
        Plane index -> (H, W) uint32 labels with stack ids.
    objects : list of EverythingObject
        With ``plane`` set and ``label`` the stack id.
    warnings : list of str
        Phase 2's warnings (e.g. nothing passed the thresholds, objects too small for
        the plane's size), prefixed by the plane.
    warning_classes : list of type
        The class of each warning (e.g. ``EmptyResultWarning``, ``SmallObjectsWarning``).
    candidates : dict
        Plane index -> :class:`GridCandidates`, when the run kept them.
    """

    planes: dict[PlaneIndex, np.ndarray] = field(default_factory=dict)
    objects: list[EverythingObject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    warning_classes: list[type[Warning]] = field(default_factory=list)
    candidates: dict[PlaneIndex, GridCandidates] = field(default_factory=dict)

    @property
    def n_objects(self) -> int:
        """Distinct stack ids (linked objects count once)."""
        return len({o.label for o in self.objects})


class _Numbering:
    """Phase 2 plane after plane, ids unique in the stack (linked along the last axis)."""

    def __init__(
        self, filters: FilterParams, link: bool, link_iou: float, carry: Carry | None = None
    ) -> None:
        self.filters = filters
        self.numbering = StackNumbering(link_iou, link)
        self.selection = PlaneSelection()
        self.carry = carry

    def add(
        self, index: PlaneIndex, candidates: GridCandidates, plane: np.ndarray | None = None
    ) -> None:
        with warnings.catch_warnings(record=True) as caught:
            for kind in PHASE2_WARNINGS:
                warnings.simplefilter("always", kind)
            result = candidates.select(self.filters)
        where = f"plane {index}: " if index else ""
        self.selection.warnings += [f"{where}{w.message}" for w in caught]
        self.selection.warning_classes += [w.category for w in caught]
        continues = bool(index) and index[-1] > 0
        carry = self.carry
        onto = None if carry is None or plane is None else (lambda labels: carry(labels, plane))
        labels, mapping = self.numbering.number(
            result.labels, [o.label for o in result.objects], continues, onto
        )
        self.selection.planes[index] = labels
        self.selection.objects += [
            replace(o, label=mapping[o.label], plane=index) for o in result.objects
        ]


def run_planes(
    decode: PlaneDecoder,
    planes: Iterable[tuple[PlaneIndex, np.ndarray]],
    count: int,
    filters: FilterParams,
    link: bool = False,
    link_iou: float = LINK_IOU,
    keep_candidates: bool = False,
    cancel_event: threading.Event | None = None,
    carry: Carry | None = None,
) -> Generator[Progress, None, PlaneSelection]:
    """Everything mode plane after plane: decode, select, number (one loop for all).

    Parameters
    ----------
    decode : callable
        ``plane -> generator of Progress returning GridCandidates`` (e.g. a session's
        ``decode_everything`` with its mode and parameters bound).
    planes : iterable of (index, plane)
        In C order of their index; planes are read as the loop reaches them.
    count : int
        Number of planes (for progress).
    filters : FilterParams
    link : bool
        Link objects along the last plane axis (module docstring).
    link_iou : float
    keep_candidates : bool
        Keep every plane's candidates in the result (to select again without the model).
    cancel_event : threading.Event, optional
        Set to stop within one progress step (``CancelledError``; nothing is returned).
    carry : callable, optional
        Link by propagation (module docstring); with ``link`` only.

    Yields
    ------
    Progress
    """
    numbering = _Numbering(filters, link, link_iou, carry)
    for number, (index, plane) in enumerate(planes):
        candidates = yield from _scaled(decode(plane), number, count, index, cancel_event)
        numbering.add(index, candidates, plane)
        if keep_candidates:
            numbering.selection.candidates[index] = candidates
    yield Progress(count, count, "done")
    return numbering.selection


def select_planes(
    candidates: dict[PlaneIndex, GridCandidates],
    filters: FilterParams,
    link: bool = False,
    link_iou: float = LINK_IOU,
) -> PlaneSelection:
    """Phase 2 again on kept candidates (no model), ids unique across the planes."""
    numbering = _Numbering(filters, link, link_iou)
    for index, plane_candidates in candidates.items():
        numbering.add(index, plane_candidates)
    numbering.selection.candidates = candidates
    return numbering.selection


def segment_everything_stack(
    decode: PlaneDecoder,
    stack,
    filters: FilterParams,
    spatial_axes: tuple[int, int] = (-2, -1),
    channel_axis: int | None = None,
    link: bool = False,
    link_iou: float = LINK_IOU,
    carry: Carry | None = None,
) -> Generator[Progress, None, StackResult]:
    """Everything mode on every plane of an array, as a generator (cancel by closing it).

    Parameters
    ----------
    decode : callable
        As in :func:`run_planes`.
    stack : array-like, nD
        Two spatial axes, optionally a channel axis, any number of plane axes.
    filters : FilterParams
    spatial_axes, channel_axis
        As in :func:`napari_segany.core.stack.get_plane`.
    link, link_iou, carry
        As in :func:`run_planes`.

    Yields
    ------
    Progress

    Returns
    -------
    StackResult
        Phase 2's warnings are issued again, each with its class.
    """
    shape = tuple(stack.shape)
    axes = plane_axes(len(shape), spatial_axes, channel_axis)
    indices = list(plane_indices(shape, spatial_axes, channel_axis))
    planes = ((index, get_plane(stack, index, spatial_axes, channel_axis)) for index in indices)
    link = link and bool(axes)
    selection = yield from run_planes(
        decode, planes, len(indices), filters, link, link_iou, carry=carry
    )
    labels = np.zeros(_label_shape(shape, channel_axis), dtype=LABEL_DTYPE)
    for index, plane_labels in selection.planes.items():
        _write_plane(labels, plane_labels, index, axes, spatial_axes, channel_axis)
    for message, kind in zip(selection.warnings, selection.warning_classes):
        warnings.warn(message, kind, stacklevel=2)
    return StackResult(labels, selection.objects)


def _scaled(steps, number: int, count: int, index: PlaneIndex, cancel_event):
    """Re-emit a plane's progress as progress of the run; stop on cancel; return the result."""
    where = f"plane {index}: " if index else ""
    while True:
        if cancel_event is not None and cancel_event.is_set():
            steps.close()
            raise CancelledError("Everything mode was cancelled; nothing was changed.")
        try:
            report = next(steps)
        except StopIteration as stop:
            return stop.value
        total = max(report.total, 1)
        done = number * total + min(report.done, total)
        yield Progress(done, count * total, f"{where}{report.message}")


def _label_shape(shape: tuple[int, ...], channel_axis: int | None) -> tuple[int, ...]:
    if channel_axis is None:
        return shape
    channel = channel_axis % len(shape)
    return tuple(size for axis, size in enumerate(shape) if axis != channel)


def _write_plane(labels, plane_labels, index, axes, spatial_axes, channel_axis) -> None:
    """Store an (H, W) plane at ``index`` of the label stack (channel axis removed)."""
    ndim = labels.ndim + (channel_axis is not None)
    channel = None if channel_axis is None else channel_axis % ndim
    kept = [axis for axis in range(ndim) if axis != channel]
    selector: list = [slice(None)] * labels.ndim
    for axis, position in zip(axes, index):
        selector[kept.index(axis)] = position
    row_axis, col_axis = (a % ndim for a in spatial_axes)
    target = plane_labels if row_axis < col_axis else plane_labels.T
    labels[tuple(selector)] = target
