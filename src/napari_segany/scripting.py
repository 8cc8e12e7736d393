"""Segment from napari layers in a script or in the napari console (no Qt here).

>>> from napari_segany import SegAny                                   # doctest: +SKIP
>>> from napari_segany.scripting import segment_layers                 # doctest: +SKIP
>>> segment_layers(viewer, image="nuclei", points="SegAny prompts",
...                labels="nuclei labels", segany=SegAny("vit_b_lm"))  # doctest: +SKIP
{(): [1]}

Every plane holding prompts is segmented; the objects are committed with new ids,
only over background pixels unless ``overwrite=True``, as one undo step per plane.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from napari_segany import _layers
from napari_segany.core.errors import InputError, NoImageError
from napari_segany.core.labels import check_label_room
from napari_segany.core.results import SegmentResult

LABELS_NAME = "SegAny labels"
_SESSIONS: dict[int, tuple[weakref.ref, Any]] = {}


def register_session(viewer: Any, segany: Any) -> None:
    """Make ``segany`` the default session of ``viewer`` (the widget calls this)."""
    _SESSIONS[id(viewer)] = (weakref.ref(viewer), segany)


def session_for(viewer: Any) -> Any | None:
    """The session registered for ``viewer`` (None when no widget loaded a model)."""
    entry = _SESSIONS.get(id(viewer))
    if entry is None or entry[0]() is not viewer:
        return None
    return entry[1]


def predict_objects(
    segany: Any, points_yx: np.ndarray, labels: np.ndarray, boxes_yxyx: np.ndarray
) -> SegmentResult:
    """Segment the current plane of ``segany``: one object from points, or one per box.

    Returns a :class:`SegmentResult` with the leading N axis (N = 1 for points or one
    box, K = 3 candidates; K = 1 when several boxes are batched).

    Parameters
    ----------
    points_yx : (P, 2) float
        Points as (row, col) on the plane; with boxes they refine every box.
    labels : (P,) int
        1 positive, 0 negative.
    boxes_yxyx : (N, 4) float
        Boxes as (y0, x0, y1, x1); N > 1 segments N objects in one batched call.
    """
    points = points_yx if len(points_yx) else None
    point_labels = labels if len(points_yx) else None
    if len(boxes_yxyx) > 1:
        result = segany.segment(
            points_yx=points, labels=point_labels, box_yxyx=boxes_yxyx, multimask=False
        )
        return result
    box = boxes_yxyx[0] if len(boxes_yxyx) else None
    result = segany.segment(points_yx=points, labels=point_labels, box_yxyx=box, multimask=True)
    return result.per_object()


def _layer(viewer: Any, layer: Any, kind: str) -> Any | None:
    if layer is None or not isinstance(layer, str):
        return layer
    if layer not in viewer.layers:
        raise InputError(f"No {kind} layer named {layer!r} in the viewer; check the name.")
    return viewer.layers[layer]


def target_labels(viewer: Any, image: Any, labels: Any) -> Any:
    """The Labels layer ``labels`` (layer or name), created to fit ``image`` if absent."""
    name = LABELS_NAME if labels is None else labels
    if not isinstance(name, str):
        _layers.check_fits(name, image)
        return name
    if name in viewer.layers:
        _layers.check_fits(viewer.layers[name], image)
        return viewer.layers[name]
    return viewer.add_labels(
        np.zeros(_layers.plane_shape(image), dtype=np.int32),
        name=name,
        **_layers.labels_transform(image),
    )


def prompt_planes(image: Any, points: Any, shapes: Any) -> list[tuple[int, ...]]:
    """Sorted plane indices of ``image`` on which ``points`` or ``shapes`` have prompts."""
    lead = _layers.spatial_ndim(image)
    coords = [_layers.image_coords(points, points.data, image)] if points is not None else []
    if shapes is not None:
        coords += [_layers.image_coords(shapes, v, image)[:1] for v in shapes.data]
    planes = {tuple(int(round(c)) for c in row[:lead]) for block in coords for row in block}
    return sorted(planes)


def segment_layers(
    viewer: Any,
    image: Any,
    points: Any = None,
    shapes: Any = None,
    labels: Any = None,
    *,
    segany: Any = None,
    overwrite: bool = False,
) -> dict[tuple[int, ...], list[int]]:
    """Segment every plane of ``image`` that holds prompts and commit the objects.

    Parameters
    ----------
    viewer : napari.Viewer or napari.components.ViewerModel
    image : napari.layers.Image or str
        The image layer (or its name).
    points : napari.layers.Points or str, optional
        Prompt points in data coordinates of the image (feature ``positive``: True on
        the object, False background; all positive without the feature).
    shapes : napari.layers.Shapes or str, optional
        Boxes; each shape is one object (its bounding box is the prompt).
    labels : napari.layers.Labels or str, optional
        Target layer or name; created with the image's shape, scale and translate
        when no layer has that name (default name ``"SegAny labels"``).
    segany : SegAny, optional
        The session; default: the one loaded in this viewer's Segment Anything widget.
    overwrite : bool
        Also write over existing labels (default: only background pixels).

    Returns
    -------
    dict
        Plane index -> ids written (0 for an object without free pixels).

    Raises
    ------
    InputError
        On a missing layer, a Labels layer of the wrong shape or no prompts at all.
    LabelsDtypeError
        When the Labels layer's dtype cannot hold the new ids (e.g. a uint8 0/255
        mask; the message gives the line that widens it). Nothing is written.
    NoImageError
        Without a session (pass ``segany=``).
    """
    segany = segany if segany is not None else session_for(viewer)
    if segany is None:
        raise NoImageError(
            "No SegAny session: pass segany=SegAny('vit_b') (or another model), "
            "or load a model in the Segment Anything widget first."
        )
    image = _layer(viewer, image, "image")
    points, shapes = _layer(viewer, points, "points"), _layer(viewer, shapes, "shapes")
    planes = prompt_planes(image, points, shapes)
    if not planes:
        raise InputError("No prompts: add points or boxes to the given layers first.")
    target = target_labels(viewer, image, labels)
    found = {}
    for index in planes:
        objects = _segment_plane(segany, image, points, shapes, index)
        if objects is not None:
            found[index] = objects.best()
    # every plane's ids must fit before the first is written (a 0/255 uint8 mask)
    needed = _layers.next_free_id(np.asarray(target.data)) + sum(map(len, found.values())) - 1
    check_label_room(np.asarray(target.data).dtype, needed, target.name)
    return {
        index: _layers.commit_masks(target, index, masks, overwrite)
        for index, masks in found.items()
    }


def _segment_plane(segany: Any, image: Any, points: Any, shapes: Any, index: tuple) -> Any:
    plane = _layers.get_plane(image, index)
    empty = (np.empty((0, 2)), np.empty(0, dtype=np.int64))
    points_yx, labels = (
        _layers.points_on_plane(points, index, image) if points is not None else empty
    )
    boxes = _layers.boxes_on_plane(shapes, index, image) if shapes is not None else np.empty((0, 4))
    points_yx, labels, boxes = _layers.clip_prompts(points_yx, labels, boxes, plane.shape[:2])
    if len(points_yx) == 0 and len(boxes) == 0:
        return None
    segany.set_image(plane, contrast_limits=_layers.contrast_of(image))
    return predict_objects(segany, points_yx, labels, boxes)
