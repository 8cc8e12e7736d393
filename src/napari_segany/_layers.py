"""napari layer <-> core conversion: planes, prompts and commits (no Qt here).

All indices are in the image layer's *data* coordinates. A "plane index" is the
tuple of leading (non-spatial) indices of the plane the viewer shows, e.g. ``(z,)``
for a ZYX stack, ``()`` for a 2D image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_segany.core.errors import InputError


def spatial_ndim(layer: Any) -> int:
    """Number of non-spatial leading axes + 2 is ``layer.ndim``; return leading count."""
    return int(layer.ndim) - 2


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


def get_plane(layer: Any, index: tuple[int, ...]) -> np.ndarray:
    """(H, W) or (H, W, C) numpy plane of ``layer`` at ``index`` (lazy arrays computed)."""
    plane = layer.data[index] if index else layer.data
    return np.asarray(plane)


def points_on_plane(
    points_layer: Any, index: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Points of ``points_layer`` lying on plane ``index``.

    Returns
    -------
    points_yx : (P, 2) float64
    labels : (P,) int64, 1 = positive, 0 = negative (feature ``positive``; default 1)
    """
    data = np.asarray(points_layer.data, dtype=float).reshape(-1, points_layer.ndim)
    lead = len(index)
    on_plane = np.all(np.round(data[:, :lead]) == np.asarray(index), axis=1) if lead else (
        np.ones(len(data), bool)
    )
    features = points_layer.features
    if "positive" in features and len(features) == len(data):
        labels = np.asarray(features["positive"], dtype=bool).astype(np.int64)
    else:
        labels = np.ones(len(data), dtype=np.int64)
    return data[on_plane, lead:], labels[on_plane]


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
    plane_shape = labels_layer.data.shape[len(index) :]
    if mask_yx.shape != plane_shape:
        raise InputError(
            f"mask of shape {mask_yx.shape} does not fit the labels plane {plane_shape}; "
            "pick a Labels layer with the image's shape"
        )
    new_id = next_free_id(np.asarray(labels_layer.data))
    plane = np.asarray(labels_layer.data[index] if index else labels_layer.data)
    target = mask_yx if overwrite else (mask_yx & (plane == 0))
    rows, cols = np.nonzero(target)
    if rows.size == 0:
        return 0
    lead = tuple(np.full(rows.size, i) for i in index)
    labels_layer.data_setitem((*lead, rows, cols), new_id)
    return new_id
