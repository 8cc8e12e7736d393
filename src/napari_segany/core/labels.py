"""Masks -> label images: painting order, free ids, linking objects across planes.

Painting order (everything mode): objects get labels 1, 2, ... by *decreasing* mask
area (ties keep their input order) and are painted in increasing label order, so a
pixel covered by several masks shows the smallest of them: small objects stay visible
over the large ones they sit on. An object fully covered by smaller ones keeps its
record but has no visible pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError, LabelsDtypeError

LABEL_DTYPE = np.uint32


def paint_masks(
    image_hw: tuple[int, int],
    windows: Sequence[tuple[int, int, np.ndarray]],
    areas: Sequence[int] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint masks into a label image, largest first (see the module docstring).

    Parameters
    ----------
    image_hw : (int, int)
        (H, W) of the label image.
    windows : sequence of (y0, x0, mask)
        Each mask as a bool array placed with its top-left corner at (y0, x0).
    areas : sequence of int
        Mask areas deciding the order (usually ``mask.sum()``).

    Returns
    -------
    labels : numpy.ndarray, (H, W) uint32
        0 = background.
    label_of : numpy.ndarray, (N,) int64
        Label given to each input mask.
    """
    labels = np.zeros(image_hw, dtype=LABEL_DTYPE)
    order = np.argsort(-np.asarray(areas, dtype=np.int64), kind="stable")
    label_of = np.empty(len(order), dtype=np.int64)
    label_of[order] = np.arange(1, len(order) + 1)
    for position in order:
        y0, x0, mask = windows[position]
        target = labels[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]]
        target[mask] = label_of[position]
    return labels, label_of


def free_pixels(
    plane: np.ndarray, masks: np.ndarray, overwrite: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, cols) each mask of (N, H, W) writes into ``plane``, in order (nothing is
    written): background pixels not taken by an earlier mask of the call, or, with
    ``overwrite``, every pixel of the mask (a later mask over an earlier one)."""
    taken = plane != 0
    pixels = []
    for mask in masks:
        target = mask if overwrite else (mask & ~taken)
        rows, cols = np.nonzero(target)
        taken[rows, cols] = True
        pixels.append((rows, cols))
    return pixels


def next_free_id(labels: np.ndarray) -> int:
    """Smallest id larger than every label in ``labels`` (1 for an empty image)."""
    array = np.asarray(labels)
    return int(array.max()) + 1 if array.size else 1


def wider_dtype(dtype: np.dtype, needed: int) -> np.dtype | None:
    """The smallest integer dtype of ``dtype``'s kind (signed or not) holding ``needed``.

    Every value ``dtype`` holds fits it too (it is at least as wide). None when no
    64-bit integer is wide enough.
    """
    kind = np.dtype(dtype)
    family = (np.int8, np.int16, np.int32, np.int64)
    if kind.kind == "u":
        family = (np.uint8, np.uint16, np.uint32, np.uint64)
    for candidate in family:
        wide = np.dtype(candidate)
        if wide.itemsize >= kind.itemsize and needed <= np.iinfo(wide).max:
            return wide
    return None


def check_label_room(dtype: np.dtype, needed: int, layer_name: str) -> None:
    """Raise :class:`LabelsDtypeError` unless integer ``dtype`` holds id ``needed``.

    Parameters
    ----------
    dtype : numpy.dtype
        The Labels layer's dtype (e.g. uint8 for a 0/255 mask).
    needed : int
        The largest id a write would put into the layer.
    layer_name : str
        Named in the message, with the line that widens the layer.
    """
    dtype = np.dtype(dtype)
    top = np.iinfo(dtype).max
    if needed <= top:
        return
    wider = wider_dtype(dtype, needed)
    how = "pick 'new layer' as the target"
    if wider is not None:
        layer = f"viewer.layers[{layer_name!r}]"
        how = (
            f"widen the layer first, keeping every label: {layer}.data = "
            f"{layer}.data.astype(np.{wider.name}); or pick 'new layer' as the target"
        )
    raise LabelsDtypeError(
        f"Labels layer '{layer_name}' stores {dtype.name} ids up to {top}, but id {needed} "
        f"is needed; nothing was written. To go on, {how}.",
        layer_name,
        dtype,
        needed,
        wider,
    )


def relabel(labels: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Copy of ``labels`` with each key of ``mapping`` replaced by its value.

    Labels absent from ``mapping`` are kept; 0 is always kept.
    """
    if not mapping:
        return labels.copy()
    top = max(int(labels.max()), *mapping)
    table = np.arange(top + 1, dtype=np.int64)
    for old, new in mapping.items():
        if old != 0:
            table[old] = new
    return table[labels].astype(labels.dtype)


def overlap_iou(previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU of every overlapping pair of objects between two label planes.

    Parameters
    ----------
    previous, current : numpy.ndarray, (H, W) int
        Label planes of the same shape.

    Returns
    -------
    pairs : numpy.ndarray, (P, 2) int64
        (previous label, current label) of each overlapping pair, both non-zero.
    iou : numpy.ndarray, (P,) float64
    """
    if previous.shape != current.shape:
        raise InputError(f"Planes to link differ in shape: {previous.shape} vs {current.shape}.")
    both = (previous != 0) & (current != 0)
    pairs, inter = np.unique(
        np.stack([previous[both], current[both]], axis=1).astype(np.int64),
        axis=0,
        return_counts=True,
    )
    if pairs.size == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    prev_area = _areas(previous, pairs[:, 0])
    cur_area = _areas(current, pairs[:, 1])
    return pairs, inter / (prev_area + cur_area - inter)


def _areas(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    unique, counts = np.unique(labels[labels != 0], return_counts=True)
    return counts[np.searchsorted(unique, ids)].astype(np.float64)


def link_labels(previous: np.ndarray, current: np.ndarray, min_iou: float = 0.5) -> dict[int, int]:
    """Match objects of ``current`` to objects of the adjacent plane ``previous``.

    Pairs are matched greedily by decreasing IoU, each object at most once, while the
    IoU is at least ``min_iou`` (> 0.5 makes matches unambiguous).

    Returns
    -------
    dict
        current label -> previous label, for matched objects only.
    """
    pairs, iou = overlap_iou(previous, current)
    used_prev: set[int] = set()
    mapping: dict[int, int] = {}
    for rank in np.argsort(-iou, kind="stable"):
        if iou[rank] < min_iou:
            break
        prev_id, cur_id = (int(v) for v in pairs[rank])
        if prev_id in used_prev or cur_id in mapping:
            continue
        used_prev.add(prev_id)
        mapping[cur_id] = prev_id
    return mapping


def renumber_plane(
    labels: np.ndarray,
    first_id: int,
    linked: dict[int, int] | None = None,
    ids: Sequence[int] | None = None,
) -> tuple[np.ndarray, dict[int, int]]:
    """Give a plane's objects ids unique in a stack.

    Objects in ``linked`` (plane label -> stack id) take that id; the others get
    consecutive ids from ``first_id`` in increasing order of their plane label.
    ``ids`` lists the plane labels to number (default: those present in ``labels``;
    pass the objects' labels to number hidden objects too).

    Returns
    -------
    labels : numpy.ndarray
        Relabelled copy (same dtype).
    mapping : dict
        Plane label -> stack id for every label present.
    """
    linked = linked or {}
    present = sorted(int(v) for v in (np.unique(labels) if ids is None else ids) if v != 0)
    mapping, next_id = {}, int(first_id)
    for label in present:
        if label in linked:
            mapping[label] = linked[label]
        else:
            mapping[label] = next_id
            next_id += 1
    if next_id > np.iinfo(labels.dtype).max:
        raise InputError(f"Too many objects for {labels.dtype} labels; use a wider dtype.")
    return relabel(labels, mapping), mapping


@dataclass
class StackNumbering:
    """Numbers a stack's planes in turn with stack-wide ids, linking each plane to the
    previous one when asked.

    Parameters
    ----------
    min_iou : float
        Overlap needed to link (see :func:`link_labels`).
    link : bool
        Give an object the id of the object it overlaps on the previous plane.
    next_id : int
        The first stack id still free.
    previous : (H, W) array or None
        The previous plane's stack labels.
    """

    min_iou: float
    link: bool
    next_id: int = 1
    previous: np.ndarray | None = None

    def number(
        self,
        plane_labels: np.ndarray,
        plane_ids: Sequence[int],
        continues: bool,
        carry: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, dict[int, int]]:
        """Renumber one plane (its own ids) into stack ids.

        Parameters
        ----------
        plane_labels : (H, W) label image of the plane.
        plane_ids : the plane's object ids (also hidden ones, see :func:`renumber_plane`).
        continues : the plane follows the previous one along the linked axis (False for
            the first plane of a run, e.g. Z = 0 of each time point).
        carry : the previous plane's stack labels -> its objects as found on this plane
            (same ids); linking then matches this plane's objects to those
            (``core.volume.carry``), not to the previous plane itself.

        Returns
        -------
        labels, mapping
            The renumbered plane and plane id -> stack id.
        """
        linked = {}
        if self.link and continues and self.previous is not None:
            reference = self.previous if carry is None else carry(self.previous)
            linked = link_labels(reference, plane_labels, self.min_iou)
        labels, mapping = renumber_plane(plane_labels, self.next_id, linked, ids=plane_ids)
        self.next_id = max([self.next_id, *(v + 1 for v in mapping.values())])
        self.previous = labels
        return labels, mapping
