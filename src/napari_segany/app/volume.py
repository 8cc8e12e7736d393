"""Propagating committed objects through a stack, without Qt (the widget drives it).

The objects are the labels on the shown plane of the target Labels layer; each is
anchored with its own mask (``Volume.add_mask``) and propagated along one of the
image's plane axes (z, or t), the other axes fixed where the viewer is. The result is
written into the other planes of that axis only where they are background (unless
``overwrite``), as one undo step.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_segany import _layers
from napari_segany.core.errors import InputError
from napari_segany.core.progress import Progress

DIRECTIONS = ("both", "forward", "backward")

PlaneIndex = tuple[int, ...]


def plane_axes(image: Any) -> list[tuple[int, str]]:
    """The image's plane axes an object can be followed along: (position in the plane
    index, its label), the last (e.g. Z of a TZYX image) first."""
    lead = _layers.plane_shape(image)[:-2]
    labels = list(image.axis_labels)[: len(lead)]
    return [(axis, str(labels[axis])) for axis in reversed(range(len(lead))) if lead[axis] > 1]


class AxisStack:
    """The image's planes along ``axis`` through ``index``, as a (N, H, W[, C]) stack
    read one plane at a time (what ``Volume`` reads)."""

    def __init__(self, image: Any, index: PlaneIndex, axis: int) -> None:
        self.image, self.index, self.axis = image, tuple(index), axis
        first = _layers.get_plane(image, self.at(0))
        self.shape = (_layers.plane_shape(image)[axis], *first.shape)
        self.dtype = first.dtype

    def at(self, position: int) -> PlaneIndex:
        """The plane index of position ``position`` along the axis."""
        return self.index[: self.axis] + (position,) + self.index[self.axis + 1 :]

    def __getitem__(self, key: tuple) -> np.ndarray:
        return _layers.get_plane(self.image, self.at(int(key[0])))


def objects_on_plane(target: Any, index: PlaneIndex) -> dict[int, np.ndarray]:
    """Label id -> (H, W) bool mask of every object on plane ``index`` of ``target``."""
    plane = np.asarray(target.data[index] if index else target.data)
    return {int(i): plane == i for i in np.unique(plane) if i}


@dataclass(frozen=True)
class Propagation:
    """What a propagation run found: label planes to write, by plane index."""

    planes: dict[PlaneIndex, np.ndarray]
    objects: list[int]


def propagate_run(
    session: Any,
    image: Any,
    index: PlaneIndex,
    axis: int,
    objects: dict[int, np.ndarray],
    direction: str = "both",
    max_slices: int | None = None,
) -> Generator[Progress, None, Propagation]:
    """Worker body: propagate ``objects`` (id -> mask on plane ``index``) along ``axis``
    of ``image``, at most ``max_slices`` each way (None: through the whole axis); the
    label planes of the other positions (empty ones left out)."""
    if not objects:
        raise InputError(
            "No objects on this plane of the labels layer: commit one first (click, then "
            "Commit), then propagate it."
        )
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {DIRECTIONS}, got {direction!r}.")
    stack = AxisStack(image, index, axis)
    volume = session.open_volume(stack, 0, _layers.contrast_of(image))
    here = index[axis]
    for obj_id, mask in objects.items():
        volume.add_mask(obj_id, here, mask)
    labels = yield from volume.propagation(direction=direction, max_slices=max_slices)
    planes = {
        stack.at(position): labels[position]
        for position in range(stack.shape[0])
        if position != here and labels[position].any()
    }
    return Propagation(planes, sorted(objects))


def write(target: Any, run: Propagation, overwrite: bool) -> str:
    """Write a run's planes into ``target`` (one undo step: record it around this call);
    the user's labels are kept unless ``overwrite``. Returns a summary."""
    bases = {index: np.asarray(target.data[index]) for index in run.planes}
    _layers.write_label_planes(target, run.planes, bases, 0, overwrite)
    noun = "object" if len(run.objects) == 1 else "objects"
    ids = ", ".join(map(str, run.objects))
    return f"propagated {noun} {ids} to {len(run.planes)} more planes of '{target.name}'"
