"""A snapped click's guide: the decoder's mask on the zoomed tile, from two views.

When the built-in model answers a click with the foreground head's object
(:func:`.snapping.snap_to_objects`), the decoder's best-scored mask says which part of
that object the click means: a merged neighbour is split off past its bounding box
(:func:`.snapping.split_off`). On planes of small objects the head works on enlarged
tiles (:func:`.objects.find_objects`), but the decoder, on the whole plane, sees the
nuclei a few model-frame pixels across and gives a coarse mask. The guide decodes the
click where the head found the object instead:

1. the window: the zoomed tile that owns the click, with its margin
   (:func:`.objects.tile_spans`); the whole plane when the plane is not zoomed;
2. the window and the window turned by 180 degrees are embedded, the click decoded in
   both, and the best-scored candidate's logits of each (turned back) averaged;
3. the guide is where the mean logit is positive (the session then keeps its parts
   under the positive clicks, as it does with every click's masks).

Measured on calibration scenes (``training/calibrate_snap.py``, docs/models.md).
"""

from __future__ import annotations

import numpy as np
import torch

from napari_segany.core.embeddings import Embedding
from napari_segany.core.mask_ops import point_pixels
from napari_segany.core.predictor import Predictor, upscale_logits
from napari_segany.core.results import SegmentResult

from .objects import tile_spans

# (y0, y1, x0, x1) of a window of the plane
Window = tuple[int, int, int, int]


def click_window(plane_hw: tuple[int, int], zoom: int, points_yx: np.ndarray) -> Window | None:
    """The window a click is decoded in for its guide.

    Parameters
    ----------
    plane_hw : (int, int)
    zoom : int
        Tiles per side the plane's objects were found with (1: not zoomed).
    points_yx : numpy.ndarray, (P, 2)
        The clicks; a point falls on pixel ``floor(y + 0.5), floor(x + 0.5)``.

    Returns
    -------
    (y0, y1, x0, x1) or None
        The tile owning the first click, with its margin; the whole plane at zoom 1;
        None when a click falls outside that window (the clicks then keep the whole
        plane's decoder).
    """
    height, width = plane_hw
    if zoom <= 1:
        return 0, height, 0, width
    rows, cols = point_pixels(np.asarray(points_yx, np.float64).reshape(-1, 2), plane_hw)
    y0, y1 = _owning_tile(height, zoom, int(rows[0]))
    x0, x1 = _owning_tile(width, zoom, int(cols[0]))
    if rows.min() < y0 or rows.max() >= y1 or cols.min() < x0 or cols.max() >= x1:
        return None
    return y0, y1, x0, x1


def windows(plane_hw: tuple[int, int], zoom: int) -> list[Window]:
    """Every window :func:`click_window` may return at this zoom (each tile with its
    margin; the whole plane at zoom 1)."""
    height, width = plane_hw
    if zoom <= 1:
        return [(0, height, 0, width)]
    return [
        (y0, y1, x0, x1)
        for _, _, y0, y1 in tile_spans(height, zoom)
        for _, _, x0, x1 in tile_spans(width, zoom)
    ]


def _owning_tile(size: int, zoom: int, pixel: int) -> tuple[int, int]:
    """(start, stop) with margin of the tile along one axis that owns ``pixel``."""
    for own_start, own_stop, start, stop in tile_spans(size, zoom):
        if own_start <= pixel < own_stop:
            return start, stop
    raise ValueError(f"pixel {pixel} is outside an axis of {size} pixels")


def window_views(rgb_uint8: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """The window of the plane ((h, w, 3) uint8) and the same turned by 180 degrees."""
    y0, y1, x0, x1 = window
    crop = rgb_uint8[y0:y1, x0:x1]
    return np.ascontiguousarray(crop), crop[::-1, ::-1].copy()  # a copy: 1 x 1 too


def guide_mask(
    predictor: Predictor,
    views: tuple[Embedding, Embedding],
    window: Window,
    plane_hw: tuple[int, int],
    points_yx: np.ndarray,
    labels: np.ndarray,
    multimask: bool = True,
    first: SegmentResult | None = None,
) -> np.ndarray:
    """The click's guide mask (module docstring, steps 2 and 3).

    Parameters
    ----------
    predictor : Predictor
    views : (Embedding, Embedding)
        Embeddings of :func:`window_views`: the window, and the window turned.
    window : (y0, y1, x0, x1)
        From :func:`click_window`.
    plane_hw : (int, int)
    points_yx : numpy.ndarray, (P, 2)
        The clicks in plane coordinates, inside ``window``.
    labels : numpy.ndarray, (P,)
        1 positive, 0 negative.
    multimask : bool
        As the click was decoded (the best-scored of three candidates, or the one).
    first : SegmentResult, optional
        The first view's prediction of these clicks, where it was made already (the
        click's own decode, when the window is the whole plane and ``views[0]`` its
        embedding): not decoded again.

    Returns
    -------
    numpy.ndarray, (H, W) bool
        False outside the window.
    """
    y0, y1, x0, x1 = window
    last = np.array([y1 - y0 - 1, x1 - x0 - 1], np.float64)
    points = np.asarray(points_yx, np.float64).reshape(-1, 2) - (y0, x0)
    # a click may lie up to half a pixel past its pixel's centre, the window does not
    points = np.clip(points, 0.0, last + 0.499)
    turned = np.clip(last - points, 0.0, None)  # pixel i of the window is pixel last - i
    total = np.zeros((y1 - y0, x1 - x0), np.float32)
    size = predictor.model.image_size
    for embedding, view_points, turn in ((views[0], points, False), (views[1], turned, True)):
        prediction = first if not turn and first is not None else None
        if prediction is None:
            prediction = predictor.predict(embedding, view_points, labels, multimask=multimask)
        logits = best_logits(prediction, embedding, size)
        total += logits[::-1, ::-1] if turn else logits
    guide = np.zeros(plane_hw, bool)
    guide[y0:y1, x0:x1] = total > 0
    return guide


def best_logits(prediction: SegmentResult, embedding: Embedding, image_size: int) -> np.ndarray:
    """(h, w) float logits of a prediction's best-scored candidate (one prompt set) at
    the resolution of the view ``embedding`` was made of."""
    best = int(np.argmax(prediction.scores))
    low_res = torch.from_numpy(prediction.logits[best : best + 1])
    return upscale_logits(low_res, embedding.input_hw, embedding.original_hw, image_size)[0].numpy()
