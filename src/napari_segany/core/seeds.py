"""Everything mode from a foreground head: one object per seeded basin (built-in model).

SAM's everything mode decodes a regular grid of points. With the built-in model, in a
dense field of small nuclei most points fall between objects or on their rims and many
objects get no point at all (docs/models.md). A model with a foreground head
(:class:`~.model.foreground_head.ForegroundHead`) says where the objects are and
where their borders run; its objects are found as in micro-sam's automatic instance
segmentation, by a seeded watershed:

1. the head's logits are brought to plane resolution (as mask logits are);
2. *seeds*: connected parts of the interior -- foreground logit above
   :data:`SEED_FOREGROUND_LOGIT` and border logit below :data:`SEED_BORDER_LOGIT` --
   of at least :data:`MIN_SEED_AREA` model-frame pixels;
3. each seed grows over the foreground (logit above :data:`EXTENT_LOGIT`) by a
   watershed on the border logits, so touching objects meet at their border.

The objects become :class:`~.automatic.GridCandidates` (one candidate each, never
overlapping), so everything mode's selection, stacks and widget serve them unchanged:
``predicted_iou`` is the object's mean foreground probability, ``stability_score`` the
share of its pixels whose foreground logit exceeds ``stability_score_offset``, and
``points_xy`` its most interior pixel. Thresholds were chosen on generated calibration
scenes (``training/calibrate_everything.py --proposals foreground``).

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

from .embeddings import Embedding
from .errors import InputError
from .mask_ops import box_pixel_span, clip_masks_to_boxes, masks_to_boxes, point_pixels
from .model.foreground_head import BORDER, FOREGROUND
from .model.sam import Sam

SEED_FOREGROUND_LOGIT = 0.5
SEED_BORDER_LOGIT = -1.0
# seeds and extent: training/calibrate_everything.py --proposals foreground --images 24
MIN_SEED_AREA = 16  # model-frame pixels (of the zoomed tiles where zoomed)
EXTENT_LOGIT = 0.5  # objects grow over the pixels the head is 62 % sure of
# 0: a click on an object always takes it (training/calibrate_snap.py; 0.5 before zoom)
CLICK_AGREEMENT_IOU = 0.0
CLICK_BOX_GROWTH = 0.1  # a snapped click's object is cut to its mask's box grown by this
# with the head's border logits, a snapped click's object is split instead: its part
# past the mask's box grown by this is the neighbour (training/calibrate_snap.py)
CLICK_SPLIT_GROWTH = 0.25
# a box's object: joined by the objects with at least this share of their pixels in the
# box, and grown or shrunk to the foreground logit, among these, whose object fills the
# box best (of those within BOX_FIT_TOLERANCE of the best fill, the one at
# BOX_FIT_POSITION of their range) (training/calibrate_snap.py)
BOX_UNION_INSIDE = 0.9
BOX_FIT_LOGITS = tuple(float(v) for v in np.arange(-2.0, 3.01, 0.25))
BOX_FIT_TOLERANCE = 0.98
BOX_FIT_POSITION = 0.65
# zoom: (typical radius in model-frame pixels below which, zoom), largest zoom first;
# typical radius: the ZOOM_PERCENTILE-th percentile of the foreground pixels' distance
# to the background (training/calibrate_zoom.py)
ZOOM_STEPS = ((4.0, 4), (5.0, 3), (10.0, 2))
ZOOM_PERCENTILE = 95
ZOOM_MARGIN = 1 / 16  # of the plane's height and width, around each tile
MAX_ZOOM = 4
AUTO_ZOOM = 0
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
        with them, :func:`snap_to_objects`).
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
    logits ((H, W), :func:`head_logits`)."""
    return zoom_for(typical_radius(foreground_logits, frame_scale(embedding)))


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
    model: Sam, rgb_uint8: np.ndarray, zoom: int, embed: Callable[[np.ndarray], Embedding]
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
        ``rgb -> Embedding`` (e.g. ``Predictor.embed``); tiles bypass the cache.

    Returns
    -------
    numpy.ndarray, (2, H, W) float32
        Each pixel's logits come from the tile that owns it.
    """
    height, width = rgb_uint8.shape[:2]
    logits = np.zeros((2, height, width), np.float32)
    for own_y0, own_y1, y0, y1 in tile_spans(height, zoom):
        for own_x0, own_x1, x0, x1 in tile_spans(width, zoom):
            tile = embed(np.ascontiguousarray(rgb_uint8[y0:y1, x0:x1]))
            part = head_logits(model, tile)
            logits[:, own_y0:own_y1, own_x0:own_x1] = part[
                :, own_y0 - y0 : own_y1 - y0, own_x0 - x0 : own_x1 - x0
            ]
    return logits


def find_objects(
    model: Sam,
    embedding: Embedding,
    rgb_uint8: np.ndarray | None = None,
    embed: Callable[[np.ndarray], Embedding] | None = None,
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
        ``rgb -> Embedding`` for the tiles.
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
    embed: Callable[[np.ndarray], Embedding] | None = None,
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
        turned = np.ascontiguousarray(rgb_uint8[::-1, ::-1])
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


def label_runs(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Run edges of every object of a label image (the format of ``MaskRuns``).

    Parameters
    ----------
    labels : numpy.ndarray, (H, W) int
        Objects 1..``count``, 0 background.
    count : int

    Returns
    -------
    edges : numpy.ndarray, (E,) int32
        Object by object, alternating run starts and exclusive ends (flat indices).
    offsets : numpy.ndarray, (count + 1,) int64
        Object ``k`` (label ``k + 1``) owns ``edges[offsets[k]:offsets[k + 1]]``.
    """
    flat = labels.reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], changes])
    ends = np.concatenate([changes, [flat.size]])
    values = flat[starts]
    inside = values > 0
    starts, ends, values = starts[inside], ends[inside], values[inside]
    order = np.argsort(values, kind="stable")  # by object, runs in flat order
    pairs = np.stack([starts[order], ends[order]], axis=1).reshape(-1).astype(np.int32)
    runs_per_object = np.bincount(values, minlength=count + 1)[1:]
    offsets = np.concatenate([[0], np.cumsum(2 * runs_per_object)]).astype(np.int64)
    return pairs, offsets


def object_scores(
    foreground_logits: np.ndarray, labels: np.ndarray, count: int, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per object: mean foreground probability, and the share of its pixels whose
    foreground logit exceeds ``offset`` ((count,) float32 each)."""
    index = np.arange(1, count + 1)
    probability = 1.0 / (1.0 + np.exp(-foreground_logits.astype(np.float64)))
    mean = ndimage.mean(probability, labels, index)
    confident = ndimage.mean(foreground_logits > offset, labels, index)
    return np.asarray(mean, np.float32).reshape(-1), np.asarray(confident, np.float32).reshape(-1)


def snap_to_objects(
    masks: np.ndarray,
    scores: np.ndarray,
    objects: np.ndarray,
    points_yx: np.ndarray | None,
    point_labels: np.ndarray | None,
    boxes_yxyx: np.ndarray | None,
    agreement_iou: float = CLICK_AGREEMENT_IOU,
    box_growth: float | None = CLICK_BOX_GROWTH,
    border_logits: np.ndarray | None = None,
    split_growth: float = CLICK_SPLIT_GROWTH,
    foreground_logits: np.ndarray | None = None,
) -> np.ndarray:
    """Answer a prompt with the object of the foreground head it designates.

    - Clicks without a box: when every positive click falls on the same object, no
      negative click does, and the best-scored mask agrees with the object (IoU at
      least ``agreement_iou``; by default any mask does), that mask becomes the
      object, where the head merged the nucleus with a neighbour, without the
      neighbour, which the decoder's extent tells apart. With ``border_logits`` the
      object is *split*: its part past the mask's bounding box grown by
      ``split_growth`` of its sides on each side is the neighbour's, the mask's pixels
      are the clicked nucleus's, and a watershed on the border
      logits shares the rest between them along the head's border (:func:`split_off`).
      Without them it is *cut* to the mask's box grown by ``box_growth`` (None: not
      cut). The other candidates stay the decoder's, to cycle through.
    - Boxes without clicks: each mask becomes the object that most of its pixels fall
      on, cut to the box (so it never reaches past the box drawn). With
      ``foreground_logits`` and ``border_logits`` the object is also fitted to the
      box (:func:`fit_to_box`): objects lying mostly in the box join it (a nucleus
      the head split in two), and its rim moves to the foreground logit at which
      it fills the box best.
    - Anything else (a box with clicks, clicks on background or on several objects):
      the masks are returned unchanged.

    Parameters
    ----------
    masks : numpy.ndarray, (K, H, W) or (N, K, H, W) bool
    scores : numpy.ndarray, (K,) or (N, K)
    objects : numpy.ndarray, (H, W) int
        The head's objects (:func:`seeded_objects`), 0 background.
    points_yx, point_labels : numpy.ndarray or None
        (P, 2) clicks as (row, col) and (P,) labels (1 positive, 0 negative).
    boxes_yxyx : numpy.ndarray or None
        (4,) or (N, 4) boxes.
    agreement_iou : float
        Default :data:`CLICK_AGREEMENT_IOU`, chosen on calibration scenes.
    box_growth : float or None
        Default :data:`CLICK_BOX_GROWTH`, chosen on calibration scenes; None: a
        snapped click's object is not cut (used without ``border_logits``).
    border_logits : numpy.ndarray, (H, W) float, optional
        The head's border logits the objects were found on
        (:attr:`PlaneObjects.border_logits`).
    split_growth : float
        Default :data:`CLICK_SPLIT_GROWTH`, chosen on calibration scenes.
    foreground_logits : numpy.ndarray, (H, W) float, optional
        The head's foreground logits the objects were found on (boxes are fitted
        with them and ``border_logits``, :func:`fit_to_box`'s defaults).

    Returns
    -------
    numpy.ndarray
        A new array of the masks' shape.
    """
    snapped = masks.copy()
    height, width = masks.shape[-2:]
    if points_yx is not None and boxes_yxyx is None:
        points = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
        rows, cols = point_pixels(points, (height, width))
        hit = objects[rows, cols]
        positive = np.asarray(point_labels).reshape(-1) == 1
        chosen = np.unique(hit[positive])
        if chosen.size == 1 and chosen[0] > 0 and not np.any(hit[~positive] == chosen[0]):
            found = objects == chosen[0]
            flat = snapped.reshape((-1,) + masks.shape[-3:])
            best = np.asarray(scores).reshape(len(flat), -1).argmax(axis=1)
            for index, candidate in enumerate(best):
                mask = flat[index, candidate]
                if _iou(mask, found) >= agreement_iou:
                    cut = found
                    if border_logits is not None:
                        cut = split_off(found, mask, border_logits, split_growth)
                    elif box_growth is not None:
                        cut = _cut_to_grown_box(found, mask, box_growth)
                    flat[index, candidate] = cut
        return snapped
    if boxes_yxyx is not None and points_yx is None:
        boxes = np.asarray(boxes_yxyx, dtype=np.float64).reshape(-1, 4)
        stacked = snapped.reshape((len(boxes),) + masks.shape[-3:])
        for index, box in enumerate(boxes):
            answers: dict[int, np.ndarray] = {}  # the candidates often share an object
            for candidate, mask in enumerate(stacked[index]):
                votes = np.bincount(objects[mask], minlength=1)
                votes[0] = 0
                if votes.max() == 0:
                    continue
                label = int(votes.argmax())
                if label not in answers:
                    if foreground_logits is not None and border_logits is not None:
                        answers[label] = fit_to_box(
                            objects, label, box, foreground_logits, border_logits
                        )
                    else:
                        answers[label] = clip_masks_to_boxes((objects == label)[None], box)[0]
                stacked[index, candidate] = answers[label]
    return snapped


def fit_to_box(
    objects: np.ndarray,
    label: int,
    box_yxyx: np.ndarray,
    foreground_logits: np.ndarray,
    border_logits: np.ndarray,
    inside_share: float = BOX_UNION_INSIDE,
    logits: tuple[float, ...] = BOX_FIT_LOGITS,
    tolerance: float = BOX_FIT_TOLERANCE,
    position: float = BOX_FIT_POSITION,
) -> np.ndarray:
    """A head object fitted to a box drawn around it.

    1. The object ``label`` is joined by every object with at least ``inside_share``
       of its pixels in the box.
    2. Every object of a window around the box grows, by a watershed on the border
       logits, over the pixels whose foreground logit exceeds ``logits[0]``.
    3. For each logit ``t`` of ``logits``, the joined objects' grown pixels in the box
       whose foreground logit exceeds ``t`` fill some share of the box (the area of
       their bounding box over the box's); of the ``n`` logits within ``tolerance``
       of the best share, in the order of ``logits``, the one at index
       ``floor(position * n)`` (0.5: the middle one) gives the answer.

    Parameters
    ----------
    objects : numpy.ndarray, (H, W) int
        The head's objects, 0 background.
    label : int
        The object the box's mask falls on most.
    box_yxyx : numpy.ndarray, (4,)
    foreground_logits, border_logits : numpy.ndarray, (H, W) float
        The logits the objects were found on.
    inside_share, logits, tolerance, position
        Defaults :data:`BOX_UNION_INSIDE`, :data:`BOX_FIT_LOGITS` (ascending),
        :data:`BOX_FIT_TOLERANCE`, :data:`BOX_FIT_POSITION`, chosen on calibration
        scenes.

    Returns
    -------
    numpy.ndarray, (H, W) bool
        Within the box (as :func:`~.mask_ops.clip_masks_to_boxes` keeps it).
    """
    height, width = objects.shape
    r0, r1, c0, c1 = box_pixel_span(box_yxyx, (height, width))
    answer = np.zeros(objects.shape, bool)
    if r1 <= r0 or c1 <= c0:
        return answer
    count = int(objects.max())
    areas = np.bincount(objects.reshape(-1), minlength=count + 1)
    inside = np.bincount(objects[r0:r1, c0:c1].reshape(-1), minlength=count + 1)
    joined = inside >= inside_share * np.maximum(areas, 1)
    joined[0], joined[label] = False, True
    margin = max(r1 - r0, c1 - c0) // 2 + 2
    y0, y1 = max(0, r0 - margin), min(height, r1 + margin)
    x0, x1 = max(0, c0 - margin), min(width, c1 + margin)
    window = np.s_[y0:y1, x0:x1]
    foreground = foreground_logits[window]
    markers = objects[window]
    grown = watershed(border_logits[window], markers, mask=(foreground > logits[0]) | (markers > 0))
    mine = np.zeros(markers.shape, bool)
    mine[r0 - y0 : r1 - y0, c0 - x0 : c1 - x0] = joined[grown[r0 - y0 : r1 - y0, c0 - x0 : c1 - x0]]
    box_area = (r1 - r0) * (c1 - c0)
    fills = np.zeros(len(logits))
    for index, logit in enumerate(logits):
        above = mine & (foreground > logit)
        rows, cols = np.flatnonzero(above.any(axis=1)), np.flatnonzero(above.any(axis=0))
        if rows.size:
            fills[index] = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) / box_area
    if fills.max() == 0:
        answer[r0:r1, c0:c1] = objects[r0:r1, c0:c1] == label
        return answer
    near = np.flatnonzero(fills >= tolerance * fills.max())
    chosen = near[min(int(position * len(near)), len(near) - 1)]
    answer[window] = mine & (foreground > logits[chosen])
    return answer


def split_off(
    found: np.ndarray,
    mask: np.ndarray,
    border_logits: np.ndarray,
    growth: float,
) -> np.ndarray:
    """The part of a head object that a decoder mask designates, split from the rest
    along the head's border logits.

    Parameters
    ----------
    found : numpy.ndarray, (H, W) bool
        One object of the head (which may hold a touching neighbour too).
    mask : numpy.ndarray, (H, W) bool
        The decoder's mask for the prompt.
    border_logits : numpy.ndarray, (H, W) float
    growth : float
        The object's pixels outside ``mask``'s bounding box grown by ``growth`` of its
        height and width on each side are the neighbour's.

    Returns
    -------
    numpy.ndarray, (H, W) bool
        ``found`` itself when none of it lies past the grown box (or ``mask`` misses
        it); else the basin of a watershed on ``border_logits`` within ``found`` that
        grows from ``mask``'s pixels on it, against the basin that grows from its
        pixels past the box.
    """
    own = mask & found
    if not own.any():
        return found
    inside = _cut_to_grown_box(found, mask, growth)
    beyond = found & ~inside
    if not beyond.any():
        return found
    rows, cols = ndimage.find_objects(found.astype(np.uint8))[0]
    markers = np.zeros((rows.stop - rows.start, cols.stop - cols.start), np.int32)
    markers[own[rows, cols]] = 1  # within the grown box: the mask's box holds it
    markers[beyond[rows, cols]] = 2
    basins = watershed(border_logits[rows, cols], markers, mask=found[rows, cols])
    part = np.zeros_like(found)
    part[rows, cols] = basins == 1
    return part


def _cut_to_grown_box(found: np.ndarray, mask: np.ndarray, growth: float) -> np.ndarray:
    """``found`` cut to ``mask``'s bounding box grown by ``growth`` of its height and
    width on each side (``found`` whole if ``mask`` is empty)."""
    if not mask.any():
        return found
    x0, y0, x1, y1 = masks_to_boxes(mask[None])[0]
    grow_y, grow_x = growth * (y1 - y0 + 1), growth * (x1 - x0 + 1)
    box_yxyx = np.array([y0 - grow_y, x0 - grow_x, y1 + grow_y, x1 + grow_x])
    return clip_masks_to_boxes(found[None], box_yxyx)[0]


def _iou(first: np.ndarray, second: np.ndarray) -> float:
    union = np.count_nonzero(first | second)
    return np.count_nonzero(first & second) / union if union else 0.0
