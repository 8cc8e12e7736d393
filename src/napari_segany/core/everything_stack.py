"""Everything mode over every plane of an nD stack, with ids unique in the stack.

Planes are visited in C order of their index along the plane axes (see
:mod:`napari_segany.core.stack`). With ``link=True``, objects are linked along the
*last* plane axis (Z of ZYX or TZYX, T of TYX): an object overlapping an object of the
previous plane along that axis with IoU >= ``link_iou`` (one-to-one, best first) takes
its id, so one object keeps one id through the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .automatic import decode_grid, everything_params
from .embeddings import Embedding
from .everything_select import EverythingObject
from .image import to_model_rgb
from .labels import LABEL_DTYPE, StackNumbering
from .predictor import Predictor
from .progress import Progress
from .stack import get_plane, plane_axes, plane_indices


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


def segment_everything_stack(
    predictor: Predictor,
    stack,
    spatial_axes: tuple[int, int] = (-2, -1),
    channel_axis: int | None = None,
    contrast_limits=None,
    channels: Sequence[int] | None = None,
    link: bool = False,
    link_iou: float = 0.5,
    embed_plane: Callable[[np.ndarray], Embedding] | None = None,
    **params,
) -> Generator[Progress, None, StackResult]:
    """Everything mode on every plane, as a generator (cancel by closing it).

    Parameters
    ----------
    predictor : Predictor
    stack : array-like, nD
        Two spatial axes, optionally a channel axis, any number of plane axes.
    spatial_axes, channel_axis
        As in :func:`napari_segany.core.stack.get_plane`.
    contrast_limits, channels
        Conversion of each plane (``core.image.to_model_rgb``).
    link : bool
        Link objects along the last plane axis (module docstring).
    link_iou : float
        Minimum IoU of linked objects.
    embed_plane : callable, optional
        ``plane -> Embedding`` for whole planes, e.g. a cached ``SegAny.embed``.
    **params
        Everything-mode parameters (:func:`napari_segany.core.automatic.segment_everything`).

    Yields
    ------
    Progress

    Returns
    -------
    StackResult
    """
    grid, filters = everything_params(**params)
    shape = tuple(stack.shape)
    axes = plane_axes(len(shape), spatial_axes, channel_axis)
    indices = list(plane_indices(shape, spatial_axes, channel_axis))
    labels = np.zeros(_label_shape(shape, channel_axis), dtype=LABEL_DTYPE)
    objects: list[EverythingObject] = []
    numbering = StackNumbering(link_iou, link)
    for number, index in enumerate(indices):
        plane = get_plane(stack, index, spatial_axes, channel_axis)
        rgb = to_model_rgb(plane, contrast_limits=contrast_limits, channels=channels)
        embedding = embed_plane(plane) if embed_plane is not None else None
        steps = decode_grid(predictor, rgb, grid, embedding)
        candidates = yield from _scaled(steps, number, len(indices), index)
        result = candidates.select(filters)
        continues = bool(axes) and index[-1] > 0
        plane_labels, mapping = numbering.number(
            result.labels, [o.label for o in result.objects], continues
        )
        _write_plane(labels, plane_labels, index, axes, spatial_axes, channel_axis)
        objects.extend(replace(o, label=mapping[o.label], plane=index) for o in result.objects)
    yield Progress(len(indices), len(indices), "done")
    return StackResult(labels, objects)


def _scaled(steps, number: int, count: int, index: tuple[int, ...]):
    """Re-emit a plane's progress as progress over the whole stack; return its result."""
    while True:
        try:
            report = next(steps)
        except StopIteration as stop:
            return stop.value
        total = max(report.total, 1)
        yield Progress(
            number * total + report.done, count * total, f"plane {index}: {report.message}"
        )


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
