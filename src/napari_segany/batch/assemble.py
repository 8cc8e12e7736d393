"""Finished parts -> one input's stack: ids unique in the stack, as the in-process run.

Pass 1 (:func:`number_parts`) numbers the planes in C order with the same
:class:`~napari_segany.core.labels.StackNumbering` the in-process run uses (linking to
the previous plane along the last plane axis when asked) and keeps only each plane's
id mapping; pass 2 (:func:`numbered_planes`) reads each part again and relabels it
for the writer. The client holds one or two planes at a time, never the stack.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..core.everything.selection import EverythingObject
from ..core.labels import StackNumbering, relabel
from .inputs import Source
from .ngff import write_zarr_labels
from .outputs import Target, write_table, write_tiff
from .parts import InputParts

PlaneIndex = tuple[int, ...]


@dataclass
class Numbered:
    """Pass 1's result for one input.

    Attributes
    ----------
    mappings : dict
        Plane index -> {plane id: stack id}.
    objects : list of EverythingObject
        Every plane's objects, stack ids and ``plane`` set, in plane order.
    top : int
        The largest stack id present in the labels (0 when none).
    warnings : list of (str, str)
        Phase 2's warnings: (class name, message prefixed by the plane).
    """

    mappings: dict[PlaneIndex, dict[int, int]] = field(default_factory=dict)
    objects: list[EverythingObject] = field(default_factory=list)
    top: int = 0
    warnings: list[tuple[str, str]] = field(default_factory=list)


def number_parts(
    parts: InputParts, indices: Sequence[PlaneIndex], link: bool, link_iou: float
) -> Numbered:
    """Number the planes' ids into stack ids (pass 1).

    Parameters
    ----------
    parts : InputParts
        Holding a part for every index.
    indices : sequence of tuple of int
        Every plane index in C order (``[()]`` for a 2D image).
    link : bool
        Link objects along the last plane axis (overlap, IoU >= ``link_iou``).
    link_iou : float
    """
    numbering = StackNumbering(link_iou, link and any(indices))
    result = Numbered()
    for index in indices:
        part = parts.load(index)
        where = f"plane {index}: " if index else ""
        result.warnings += [(kind, f"{where}{text}") for kind, text in part.warnings]
        continues = bool(index) and index[-1] > 0
        labels, mapping = numbering.number(part.labels, [o.label for o in part.objects], continues)
        result.top = max(result.top, int(labels.max()) if labels.size else 0)
        result.mappings[index] = mapping
        result.objects += [replace(o, label=mapping[o.label], plane=index) for o in part.objects]
    return result


def numbered_planes(
    parts: InputParts, numbered: Numbered
) -> Iterator[tuple[PlaneIndex, np.ndarray]]:
    """Every plane's stack ids, (H, W) uint32, in plane order (pass 2)."""
    for index, mapping in numbered.mappings.items():
        yield index, relabel(parts.load(index).labels, mapping)


def write_results(target: Target, source: Source, planes, top: int, objects) -> None:
    """Write one input's labels (and table, when its target names one), atomically.

    Parameters
    ----------
    target : Target
    source : Source
    planes : iterable of (index, (H, W) array)
        Stack ids of every plane, in plane order.
    top : int
        The largest id present.
    objects : list of EverythingObject
        With stack ids and ``plane`` set.
    """
    if target.kind == "zarr":
        write_zarr_labels(target, source, planes, objects)
        return
    write_tiff(target.labels, source, planes, top)
    if target.table is not None:
        write_table(target.table, objects, source.plane_letters)
