"""napari layer <-> core conversion: planes, prompts, previews and commits (no Qt here).

All indices are in the image layer's *data* coordinates. A "plane index" is the
tuple of leading (non-spatial) indices of a plane, e.g. ``(z,)`` for a ZYX stack,
``(t, z)`` for TZYX, ``()`` for a 2D image. RGB(A) layers keep their colour axis last
and it is not part of the plane index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_segany._levels import get_plane as get_plane
from napari_segany._levels import labels_transform as labels_transform
from napari_segany._levels import working_level as working_level
from napari_segany.core.errors import InputError
from napari_segany.core.labels import check_label_room, free_pixels
from napari_segany.core.prompts import clip_boxes, points_inside

POSITIVE_COLOR = "lime"
NEGATIVE_COLOR = "magenta"


def spatial_ndim(layer: Any) -> int:
    """Number of leading (plane-index) axes of ``layer``: ``layer.ndim - 2``."""
    return int(layer.ndim) - 2


def plane_shape(image: Any) -> tuple[int, ...]:
    """Shape of a Labels layer that fits ``image``: the data shape of its working level
    (:func:`working_level`) without the RGB axis."""
    shape = tuple(int(s) for s in working_level(image)[0].shape)
    return shape[:-1] if getattr(image, "rgb", False) else shape


def plane_index(layer: Any, world_point: tuple[float, ...]) -> tuple[int, ...]:
    """Leading indices of the plane of ``layer`` under the viewer's current point.

    Parameters
    ----------
    layer : napari.layers.Image
        Image layer; its last two data axes (before RGB) are Y, X.
    world_point : tuple of float
        ``viewer.dims.point`` (world coordinates).
    """
    data_point = layer.world_to_data(world_point)
    lead = spatial_ndim(layer)
    shape = layer.data.shape
    return tuple(int(np.clip(round(c), 0, shape[i] - 1)) for i, c in enumerate(data_point[:lead]))


def plane_words(index: tuple[int, ...], axis_labels: Sequence[str] = ()) -> str:
    """How a status line names plane ``index``: ``""`` for a 2D image (no plane),
    ``"plane z=3"`` where the layer names its axes (``axis_labels``, all of the layer's
    axes), else ``"plane 3"`` / ``"plane (1, 3)"``."""
    if not index:
        return ""
    names = [str(name) for name in tuple(axis_labels)[: len(index)]]
    named = len(names) == len(index) and not any(n.lstrip("-").isdigit() for n in names)
    if named:
        return "plane " + ", ".join(f"{n}={i}" for n, i in zip(names, index, strict=True))
    return f"plane {index[0]}" if len(index) == 1 else f"plane {tuple(int(i) for i in index)}"


def contrast_of(layer: Any) -> tuple[float, float] | None:
    """The contrast limits SAM should see for ``layer`` (None: keep uint8 RGB unchanged)."""
    if getattr(layer, "rgb", False) and layer.data.dtype == np.uint8:
        return None
    return tuple(float(c) for c in layer.contrast_limits)


def _on_plane(coords: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """Boolean (P,) mask of the rows of ``coords`` (P, ndim) whose leading axes hit ``index``."""
    if not index:
        return np.ones(len(coords), dtype=bool)
    return np.all(np.round(coords[:, : len(index)]) == np.asarray(index), axis=1)


def image_coords(layer: Any, coords: np.ndarray, image: Any | None) -> np.ndarray:
    """Data coordinates (P, ndim) of ``layer`` mapped to ``image``'s data coordinates.

    Layers made by the widget share the image's transform (no work is done); a layer
    with another scale, translate or affine goes through world coordinates.
    """
    coords = np.asarray(coords, dtype=float).reshape(-1, layer.ndim)
    if image is None:
        return coords
    if not _same_transform(layer, image):
        if layer.ndim != image.ndim:
            raise InputError(
                f"Layer '{layer.name}' has {layer.ndim} dimensions but image '{image.name}' "
                f"has {image.ndim}; draw prompts in a layer made for this image."
            )
        world = [image.world_to_data(layer.data_to_world(row)) for row in coords]
        coords = np.array(world, dtype=float).reshape(-1, image.ndim)
    factor = working_level(image)[1]
    if factor != (1.0, 1.0):  # a multiscale layer worked on at a coarser level
        coords = coords.copy()
        coords[:, image.ndim - 2 :] /= np.asarray(factor)
    return coords


def _same_transform(layer: Any, image: Any) -> bool:
    return (
        layer.ndim == image.ndim
        and all(
            np.allclose(getattr(layer, name), getattr(image, name))
            for name in ("scale", "translate", "rotate", "shear")
        )
        and np.allclose(layer.affine.affine_matrix, image.affine.affine_matrix)
    )


def points_on_plane(
    points_layer: Any, index: tuple[int, ...], image: Any | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Points of ``points_layer`` lying on plane ``index`` (of ``image``, when given).

    Returns
    -------
    points_yx : (P, 2) float64
        In the image's data coordinates (row, col).
    labels : (P,) int64, 1 = positive, 0 = negative (feature ``positive``; default 1)
    """
    data = image_coords(points_layer, points_layer.data, image)
    on_plane = _on_plane(data, index)
    features = points_layer.features
    if "positive" in features and len(features) == len(data):
        labels = np.asarray(features["positive"], dtype=bool).astype(np.int64)
    else:
        labels = np.ones(len(data), dtype=np.int64)
    return data[on_plane, len(index) :], labels[on_plane]


def boxes_on_plane(
    shapes_layer: Any, index: tuple[int, ...], image: Any | None = None
) -> np.ndarray:
    """Bounding boxes (N, 4) as (y0, x0, y1, x1) of the shapes drawn on plane ``index``.

    Every shape counts (a rotated rectangle or an ellipse gives its bounding box);
    a shape belongs to the plane when all its vertices lie on it.
    """
    boxes = []
    for vertices in shapes_layer.data:
        coords = image_coords(shapes_layer, vertices, image)
        if len(coords) and _on_plane(coords, index).all():
            yx = coords[:, len(index) :]
            boxes.append([*yx.min(axis=0), *yx.max(axis=0)])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def clip_prompts(
    points_yx: np.ndarray, labels: np.ndarray, boxes: np.ndarray, hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop points outside the (H, W) plane and clip boxes to it (empty boxes dropped).

    The rules of :mod:`napari_segany.core.prompts`: points need ``0 <= y < H``, box
    edges are clipped to ``[0, H] x [0, W]``.
    """
    inside = points_inside(points_yx, hw)
    clipped = clip_boxes(boxes, hw)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return points_yx[inside], labels[inside], clipped[keep]


def remove_on_plane(layer: Any, index: tuple[int, ...], image: Any | None = None) -> int:
    """Remove the points or shapes of ``layer`` on plane ``index``; return how many.

    Uses the layer's own selection removal, so point features stay aligned.
    """
    if hasattr(layer, "nshapes"):
        hits = [
            i
            for i, v in enumerate(layer.data)
            if _on_plane(image_coords(layer, v, image), index).all()
        ]
    else:
        coords = image_coords(layer, layer.data, image)
        hits = np.flatnonzero(_on_plane(coords, index)).tolist()
    if hits:
        layer.selected_data = set(hits)
        layer.remove_selected()
    return len(hits)


def check_fits(labels_layer: Any, image: Any) -> None:
    """Raise :class:`InputError` unless ``labels_layer`` has the shape of ``image``'s planes."""
    expected = plane_shape(image)
    if tuple(labels_layer.data.shape) != expected:
        raise InputError(
            f"The Labels layer '{labels_layer.name}' has shape {tuple(labels_layer.data.shape)}, "
            f"but image '{image.name}' needs {expected}. Pick another Labels layer or "
            "'new layer' as the target."
        )


def next_free_id(labels_data: np.ndarray) -> int:
    """Smallest id larger than every id in ``labels_data``."""
    return int(np.max(labels_data)) + 1 if labels_data.size else 1


def commit_mask(
    labels_layer: Any, index: tuple[int, ...], mask_yx: np.ndarray, overwrite: bool = False
) -> int:
    """Write ``mask_yx`` into plane ``index`` of ``labels_layer`` with a new id (undoable).

    Only background pixels are written unless ``overwrite``. Returns the id used,
    or 0 when nothing was written.
    """
    ids = commit_masks(labels_layer, index, np.asarray(mask_yx)[None], overwrite)
    return ids[0]


def commit_masks(
    labels_layer: Any, index: tuple[int, ...], masks: np.ndarray, overwrite: bool = False
) -> list[int]:
    """Write N object masks (N, H, W) into plane ``index`` with new ids, as one undo step.

    Each object gets the next free id. Without ``overwrite`` only background pixels
    (0, including pixels not taken by an earlier object of this call) are written.

    Returns
    -------
    list of int
        The id written for each object, 0 for an object that found no free pixel.

    Raises
    ------
    InputError
        If a mask does not fit the labels plane (nothing is written).
    LabelsDtypeError
        If the layer's dtype cannot hold the new ids, e.g. a uint8 0/255 mask (nothing
        is written; :func:`widen_labels` makes room).
    """
    plane_hw = tuple(labels_layer.data.shape[len(index) :])
    if masks.ndim != 3 or tuple(masks.shape[1:]) != plane_hw:
        raise InputError(
            f"mask of shape {masks.shape[1:]} does not fit the labels plane {plane_hw}; "
            "pick a Labels layer with the image's shape"
        )
    first_id = next_free_id(np.asarray(labels_layer.data))
    plane = np.array(labels_layer.data[index] if index else labels_layer.data)
    pixels = free_pixels(plane, masks, overwrite)
    count = sum(rows.size > 0 for rows, _ in pixels)
    check_label_room(np.asarray(labels_layer.data).dtype, first_id + count - 1, labels_layer.name)
    ids, next_id = [], first_id
    with labels_layer.block_history():
        for rows, cols in pixels:
            if rows.size == 0:
                ids.append(0)
                continue
            lead = tuple(np.full(rows.size, i) for i in index)
            labels_layer.data_setitem((*lead, rows, cols), next_id)
            ids.append(next_id)
            next_id += 1
    return ids


def widen_labels(labels_layer: Any, dtype: Any) -> None:
    """Give ``labels_layer`` the wider integer ``dtype``, keeping every label value.

    The layer's undo history stays: earlier commits can still be undone (undo brings
    labels back, not the old dtype). Lazy data (dask, zarr) is loaded into memory.

    Raises
    ------
    InputError
        If ``dtype`` cannot hold every value the layer has now (nothing changes).
    """
    data = np.asarray(labels_layer.data)
    dtype = np.dtype(dtype)
    if data.size and not (
        np.iinfo(dtype).min <= int(data.min()) and int(data.max()) <= np.iinfo(dtype).max
    ):
        raise InputError(
            f"{dtype.name} cannot hold every label of '{labels_layer.name}' ({data.dtype.name}); "
            "choose a wider integer dtype."
        )
    labels_layer.data = data.astype(dtype)


def show_preview(
    preview_layer: Any, index: tuple[int, ...], masks: np.ndarray | None, old: tuple | None
) -> None:
    """Draw object masks (N, H, W) as ids 1..N on plane ``index`` of ``preview_layer``.

    ``old`` is the plane index drawn before (cleared first); ``masks=None`` only clears.
    """
    data = preview_layer.data
    if old is not None and len(old) == data.ndim - 2:
        data[old if old else ...] = 0
    if masks is not None:
        ids = np.zeros(masks.shape[1:], dtype=data.dtype)
        for number, mask in enumerate(masks, start=1):
            ids[mask & (ids == 0)] = min(number, np.iinfo(data.dtype).max)
        data[index if index else ...] = ids
    preview_layer.refresh()


def free_id_outside(labels_layer: Any, indices: Sequence[tuple[int, ...]]) -> int:
    """Largest id of ``labels_layer`` outside the planes ``indices`` (0 when none)."""
    data = np.asarray(labels_layer.data)
    keep = np.ones(data.shape[: data.ndim - 2], dtype=bool)  # 0-d for a 2D layer
    for index in indices:
        keep[index] = False
    return int(data[keep].max(initial=0))


def write_label_planes(
    labels_layer: Any,
    planes: dict[tuple[int, ...], np.ndarray],
    bases: dict[tuple[int, ...], np.ndarray | None],
    offset: int = 0,
    overwrite: bool = False,
) -> dict[tuple[int, ...], np.ndarray]:
    """Write label planes (everything mode) into ``labels_layer`` as one undo step.

    Parameters
    ----------
    planes : dict
        Plane index -> (H, W) int label plane (0 = background).
    bases : dict
        Plane index -> the plane's content the labels go over: an (H, W) array (the
        user's labels, kept: only its 0 pixels are written unless ``overwrite``), or
        None to replace the whole plane (a layer that holds only everything results).
    offset : int
        Added to every non-zero label (keeps ids unique in the layer).
    overwrite : bool
        Write over the non-zero pixels of a base too.

    Returns
    -------
    dict
        Plane index -> the plane as written (to detect later edits).

    Raises
    ------
    InputError
        If a plane does not fit (nothing written).
    LabelsDtypeError
        If the ids do not fit the layer's dtype (nothing written).
    """
    dtype = np.asarray(labels_layer.data).dtype
    top = max((int(p.max(initial=0)) for p in planes.values()), default=0) + offset
    check_label_room(dtype, top, labels_layer.name)
    for index, ids in planes.items():
        current_hw = tuple(labels_layer.data.shape[len(index) :])
        if current_hw != ids.shape:
            raise InputError(
                f"A label plane of shape {ids.shape} does not fit the plane "
                f"{current_hw} of '{labels_layer.name}'; pick another target."
            )
    written = {}
    with labels_layer.block_history():
        for index, ids in planes.items():
            current = np.asarray(labels_layer.data[index] if index else labels_layer.data)
            base = bases.get(index)
            new = np.zeros_like(current) if base is None else np.array(base, dtype=dtype)
            take = ids > 0 if (base is None or overwrite) else (ids > 0) & (new == 0)
            new[take] = ids[take] + offset
            rows, cols = np.nonzero(new != current)
            if rows.size:
                lead = tuple(np.full(rows.size, i) for i in index)
                labels_layer.data_setitem((*lead, rows, cols), new[rows, cols], refresh=False)
            written[index] = new
    labels_layer.refresh()
    return written
