"""The built-in model's foreground head's objects on a plane (seeded watershed).

SAM's everything mode decodes a regular grid of points. With the built-in model, in a
dense field of small nuclei most points fall between objects or on their rims and many
objects get no point at all (docs/models.md). A model with a foreground head
(:class:`~napari_segany.core.model.foreground_head.ForegroundHead`) says where the
objects are and where their borders run; its objects are found as in micro-sam's
automatic instance segmentation, by a seeded watershed:

1. the head's logits are brought to plane resolution (as mask logits are);
2. *seeds*: connected parts of the interior -- foreground logit above
   :data:`SEED_FOREGROUND_LOGIT` and border logit below :data:`SEED_BORDER_LOGIT` --
   of at least :data:`MIN_SEED_AREA` model-frame pixels;
3. each seed grows over the foreground (logit above :data:`EXTENT_LOGIT`) by a
   watershed on the border logits, so touching objects meet at their border.

Everything mode's ``"ais"`` proposer (:mod:`.proposer`) makes them candidates;
snapped prompts (:mod:`.snapping`) answer with them. Thresholds were chosen on
generated calibration scenes (``training/calibrate_everything.py --mode ais``).

**Zoom.** The head predicts 8 x 8 model-frame pixels per embedding cell, so nuclei a
few pixels across in the model frame merge or vanish. :func:`find_objects` first runs
the head on the whole plane; where the foreground says the objects are small
(:func:`typical_radius` below the radii of :data:`ZOOM_STEPS`), it runs the head again
on ``zoom x zoom`` tiles of the plane, each enlarged into the model frame (with a
margin of :data:`ZOOM_MARGIN` of the plane for context), and finds the objects on the
stitched logits. The zoom and its radii were chosen on calibration scenes
(``training/calibrate_zoom.py``).

**Two views.** With the plane at hand, :func:`plane_logits` runs the head (zoomed or
not) on the plane and on the plane turned by 180 degrees, and averages the two logits
(test-time augmentation, :data:`HEAD_VIEWS`): borders between touching nuclei and
rims come out steadier, for twice the head's embeddings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.segmentation import watershed

from napari_segany.core.embeddings import Embedding
from napari_segany.core.errors import InputError
from napari_segany.core.model.foreground_head import BORDER, FOREGROUND
from napari_segany.core.model.sam import Sam

SEED_FOREGROUND_LOGIT = 0.5
SEED_BORDER_LOGIT = -1.0
# seeds and extent: training/calibrate_everything.py --mode ais --images 24
MIN_SEED_AREA = 16  # model-frame pixels (of the zoomed tiles where zoomed)
EXTENT_LOGIT = 0.5  # objects grow over the pixels the head is 62 % sure of
# zoom: (typical radius in model-frame pixels below which, zoom), largest zoom first;
# typical radius: the ZOOM_PERCENTILE-th percentile of the foreground pixels' distance
# to the background (training/calibrate_zoom.py)
ZOOM_STEPS = ((4.0, 4), (5.0, 3), (10.0, 2))
ZOOM_PERCENTILE = 95
ZOOM_MARGIN = 1 / 16  # of the plane's height and width, around each tile
MAX_ZOOM = 4
AUTO_ZOOM = 0
# the automatic zoom keeps tiles at least this many plane pixels long on each side: a
# tiny plane (a 61 x 57 crop) is not cut into tiles of a few dozen pixels, whose noise,
# enlarged, the head took for objects (issue 19; docs/models.md, "Inputs")
MIN_TILE_PX = 64
# the head's logits averaged over the plane and the plane turned by 180 degrees (2) or
# of the plane alone (1) (training/calibrate_snap.py --views 1 / 2, docs/models.md)
HEAD_VIEWS = 2
VIEWS = (1, 2)


@dataclass
class PlaneObjects:
    """The head's objects on one plane.

    Attributes
    ----------
    labels : numpy.ndarray, (H, W) int32
        0 background, objects 1..K.
    seeds_yx : numpy.ndarray, (K, 2) float64
        Most interior pixel centre of each object's seed.
    foreground_logits, border_logits : numpy.ndarray, (H, W) float32
        The head's logits the objects were found on (snapped prompts split and fit
        with them, :func:`.snapping.snap_to_objects`).
    zoom : int
        1 (the whole plane at once) or the tiles per side it was found with.
    """

    labels: np.ndarray
    seeds_yx: np.ndarray
    foreground_logits: np.ndarray
    border_logits: np.ndarray
    zoom: int


def head_logits(model: Sam, embedding: Embedding) -> np.ndarray:
    """Foreground and border logits of one plane (or crop) at its resolution.

    Parameters
    ----------
    model : Sam
        A model with a foreground head.
    embedding : Embedding

    Returns
    -------
    numpy.ndarray, (2, H, W) float32
        Channels ``FOREGROUND`` and ``BORDER``; (H, W) = ``embedding.original_hw``.

    Raises
    ------
    InputError
        The model has no foreground head.
    """
    height, width = embedding.input_hw
    with torch.inference_mode():
        dtype = next(model.parameters()).dtype
        logits = model.foreground(embedding.features.to(model.device, dtype))
        logits = logits[:, :, :height, :width].float()
        if tuple(embedding.original_hw) != (height, width):
            logits = F.interpolate(
                logits, embedding.original_hw, mode="bilinear", align_corners=False
            )
        return logits[0].cpu().numpy()


def seeded_objects(
    foreground_logits: np.ndarray,
    border_logits: np.ndarray,
    min_seed_area: int,
    foreground_logit: float = SEED_FOREGROUND_LOGIT,
    border_logit: float = SEED_BORDER_LOGIT,
    extent_logit: float = EXTENT_LOGIT,
) -> tuple[np.ndarray, np.ndarray]:
    """Objects of a seeded watershed (steps 2 and 3 of the module docstring).

    Parameters
    ----------
    foreground_logits, border_logits : numpy.ndarray, (H, W) float
    min_seed_area : int
        Seeds (4-connected) of fewer pixels are dropped.
    foreground_logit, border_logit, extent_logit : float
        Thresholds of steps 2 and 3 (defaults: the calibrated constants).

    Returns
    -------
    labels : numpy.ndarray, (H, W) int32
        0 background, objects 1..K.
    seeds_yx : numpy.ndarray, (K, 2) float64
        Most interior pixel centre (``index + 0.5``) of each object's seed.
    """
    if foreground_logits.shape != border_logits.shape or foreground_logits.ndim != 2:
        raise ValueError(
            "foreground and border logits must be two (H, W) arrays of the same shape, "
            f"got {foreground_logits.shape} and {border_logits.shape}"
        )
    interior = (foreground_logits > foreground_logit) & (border_logits < border_logit)
    foreground = (foreground_logits > extent_logit) | interior  # seeds always grow
    parts, count = ndimage.label(interior)
    areas = ndimage.sum_labels(interior, parts, np.arange(1, count + 1))
    renumber = np.zeros(count + 1, np.int32)
    big = np.flatnonzero(areas >= min_seed_area)
    renumber[big + 1] = np.arange(1, big.size + 1, dtype=np.int32)
    markers = renumber[parts]
    if big.size == 0:
        return np.zeros(foreground.shape, np.int32), np.zeros((0, 2))
    depth = ndimage.distance_transform_edt(markers > 0)
    peaks = ndimage.maximum_position(depth, markers, np.arange(1, big.size + 1))
    labels = watershed(border_logits, markers, mask=foreground).astype(np.int32)
    return labels, np.asarray(peaks, np.float64).reshape(-1, 2) + 0.5


def plane_objects(
    logits: np.ndarray, embedding: Embedding, zoom: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`seeded_objects` of :func:`head_logits` (or of :func:`tiled_head_logits`
    at ``zoom``), with :data:`MIN_SEED_AREA` (model-frame pixels) converted to the
    plane's pixels."""
    height, width = embedding.original_hw
    frame_pixels = embedding.input_hw[0] * embedding.input_hw[1] * zoom * zoom
    min_area = max(1, round(MIN_SEED_AREA * height * width / frame_pixels))
    return seeded_objects(logits[FOREGROUND], logits[BORDER], min_area)


def frame_scale(embedding: Embedding) -> float:
    """Model-frame pixels per plane pixel (e.g. 0.5 for a 1024 px plane)."""
    return embedding.input_hw[0] / embedding.original_hw[0]


def typical_radius(
    foreground_logits: np.ndarray, scale: float, percentile: float = ZOOM_PERCENTILE
) -> float:
    """How large the head's objects are: the ``percentile``-th percentile (default
    :data:`ZOOM_PERCENTILE`) of the foreground pixels' distance to the background, in
    model-frame pixels (0 without foreground).

    Parameters
    ----------
    foreground_logits : numpy.ndarray, (H, W)
        The head's foreground logits at plane resolution.
    scale : float
        Model-frame pixels per plane pixel (:func:`frame_scale`).
    percentile : float
    """
    foreground = foreground_logits > 0
    if not foreground.any():
        return 0.0
    depth = ndimage.distance_transform_edt(foreground)
    return float(np.percentile(depth[foreground], percentile)) * scale


def auto_zoom(foreground_logits: np.ndarray, embedding: Embedding) -> int:
    """The zoom :data:`AUTO_ZOOM` picks for a plane from its whole-plane foreground
    logits ((H, W), :func:`head_logits`), at most one that keeps tiles of
    :data:`MIN_TILE_PX` pixels."""
    largest = max(1, min(embedding.original_hw) // MIN_TILE_PX)
    return min(zoom_for(typical_radius(foreground_logits, frame_scale(embedding))), largest)


def zoom_for(radius: float) -> int:
    """Tiles per side for objects of :func:`typical_radius` ``radius``
    (:data:`ZOOM_STEPS`); 1 for no foreground at all."""
    if radius <= 0:
        return 1
    for below, zoom in ZOOM_STEPS:
        if radius < below:
            return zoom
    return 1


def tile_spans(size: int, zoom: int) -> list[tuple[int, int, int, int]]:
    """Along one axis: ``(own_start, own_stop, start, stop)`` of each of ``zoom`` tiles
    (fewer on an axis of fewer than ``zoom`` pixels: no tile is empty); a tile owns
    ``[own_start, own_stop)`` and is cut with :data:`ZOOM_MARGIN` of ``size`` more on
    each side (within the plane)."""
    edges = np.linspace(0, size, zoom + 1).round().astype(int)
    margin = int(round(ZOOM_MARGIN * size))
    return [
        (int(a), int(b), max(0, int(a) - margin), min(size, int(b) + margin))
        for a, b in zip(edges[:-1], edges[1:])
        if b > a
    ]


def tiled_head_logits(
    model: Sam, rgb_uint8: np.ndarray, zoom: int, embed: Callable[..., Embedding]
) -> np.ndarray:
    """The head's logits of a plane from ``zoom x zoom`` enlarged tiles, stitched.

    Parameters
    ----------
    model : Sam
    rgb_uint8 : numpy.ndarray, (H, W, 3) uint8
        The plane as the model sees it.
    zoom : int
        Tiles per side (>= 2).
    embed : callable
        ``(rgb, enlarge) -> Embedding`` (e.g. ``Predictor.embed``); tiles bypass the
        cache. A tile may be enlarged ``zoom`` times more than the plane (``enlarge``),
        so a model's largest enlargement (``max_upscale``) bounds the plane's view, and
        the zoom still enlarges its small objects.

    Returns
    -------
    numpy.ndarray, (2, H, W) float32
        Each pixel's logits come from the tile that owns it.
    """
    height, width = rgb_uint8.shape[:2]
    logits = np.zeros((2, height, width), np.float32)
    for own_y0, own_y1, y0, y1 in tile_spans(height, zoom):
        for own_x0, own_x1, x0, x1 in tile_spans(width, zoom):
            tile = embed(np.ascontiguousarray(rgb_uint8[y0:y1, x0:x1]), zoom)
            part = head_logits(model, tile)
            logits[:, own_y0:own_y1, own_x0:own_x1] = part[
                :, own_y0 - y0 : own_y1 - y0, own_x0 - x0 : own_x1 - x0
            ]
    return logits


def find_objects(
    model: Sam,
    embedding: Embedding,
    rgb_uint8: np.ndarray | None = None,
    embed: Callable[..., Embedding] | None = None,
    zoom: int = AUTO_ZOOM,
    views: int = HEAD_VIEWS,
) -> PlaneObjects:
    """The head's objects on a plane, zoomed in where they are small (module docstring).

    Parameters
    ----------
    model : Sam
        A model with a foreground head.
    embedding : Embedding
        The whole plane's embedding.
    rgb_uint8 : numpy.ndarray, (H, W, 3) uint8, optional
        The plane as the model sees it; without it (or without ``embed``) the plane is
        not zoomed.
    embed : callable, optional
        ``(rgb, enlarge=1) -> Embedding`` for the views and tiles
        (:func:`tiled_head_logits`).
    zoom : int
        :data:`AUTO_ZOOM` (0): chosen from the whole plane's foreground
        (:func:`zoom_for` of :func:`typical_radius`); 1 to :data:`MAX_ZOOM`: that many
        tiles per side.
    views : int
        :data:`HEAD_VIEWS` (2): the head's logits are the mean of the plane's and the
        plane turned by 180 degrees' (:func:`plane_logits`); 1: the plane's alone.

    Returns
    -------
    PlaneObjects
        Labels (H, W), seeds (K, 2), the foreground logits they were found on and the
        zoom used.

    Raises
    ------
    InputError
        The model has no foreground head, ``zoom`` is not 0 to :data:`MAX_ZOOM` or
        ``views`` not 1 or 2.
    """
    logits, zoom = plane_logits(model, embedding, rgb_uint8, embed, zoom, views)
    labels, seeds_yx = plane_objects(logits, embedding, zoom)
    return PlaneObjects(labels, seeds_yx, logits[FOREGROUND], logits[BORDER], zoom)


def plane_logits(
    model: Sam,
    embedding: Embedding,
    rgb_uint8: np.ndarray | None = None,
    embed: Callable[..., Embedding] | None = None,
    zoom: int = AUTO_ZOOM,
    views: int = HEAD_VIEWS,
) -> tuple[np.ndarray, int]:
    """The head's (2, H, W) logits that :func:`find_objects` finds a plane's objects on
    (same arguments), and the zoom used (1 without ``rgb_uint8`` or ``embed``).

    With ``views=2`` the plane turned by 180 degrees is embedded (or tiled) too, at the
    zoom chosen for the plane, and the logits are the mean of both views; without
    ``rgb_uint8`` or ``embed`` the plane's embedding alone is used (one view).
    """
    check_zoom(zoom)
    check_views(views)
    if rgb_uint8 is not None and tuple(rgb_uint8.shape[:2]) != tuple(embedding.original_hw):
        raise InputError(
            f"The image is {rgb_uint8.shape[:2]} but the embedding is for a "
            f"{embedding.original_hw} plane."
        )
    logits = head_logits(model, embedding)
    if rgb_uint8 is None or embed is None:
        return logits, 1
    if zoom == AUTO_ZOOM:
        zoom = auto_zoom(logits[FOREGROUND], embedding)
    if zoom > 1:
        logits = tiled_head_logits(model, rgb_uint8, zoom, embed)
    if views == 2:
        turned = rgb_uint8[::-1, ::-1].copy()  # a copy: a 1 x 1 view keeps its strides
        if zoom > 1:
            turned_logits = tiled_head_logits(model, turned, zoom, embed)
        else:
            turned_logits = head_logits(model, embed(turned))
        logits = (logits + turned_logits[:, ::-1, ::-1]) / 2
    return logits, zoom


def check_views(views) -> None:
    """An ``InputError`` unless ``views`` is 1 or 2 (:data:`VIEWS`)."""
    whole_number = isinstance(views, int | np.integer) and not isinstance(views, bool)
    if not whole_number or views not in VIEWS:
        raise InputError(
            f"head_views must be 1 (the plane) or 2 (the plane and the plane turned by "
            f"180 degrees, averaged), got {views!r}."
        )


def check_zoom(zoom) -> None:
    """An ``InputError`` unless ``zoom`` is an integer from 0 (automatic) to
    :data:`MAX_ZOOM`."""
    whole_number = isinstance(zoom, int | np.integer) and not isinstance(zoom, bool)
    if not whole_number or not 0 <= zoom <= MAX_ZOOM:
        raise InputError(
            f"head_zoom must be an integer from 0 (automatic) to {MAX_ZOOM} (tiles per "
            f"side), got {zoom!r}."
        )
