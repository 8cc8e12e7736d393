"""Snapped prompts: a click or a box answered with the foreground head's object.

The built-in model's decoder masks leak into touching neighbours; its foreground head
(:mod:`.objects`) segments nuclei better. A click is answered with the head's object
it falls on, split from a merged neighbour along the head's border logits
(:func:`split_off`); a box with the object that fills it, fitted to it
(:func:`fit_to_box`). Rules and constants were chosen on calibration scenes
(``training/calibrate_snap.py``; docs/models.md, "Snapped prompts").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from napari_segany.core.mask_ops import (
    box_pixel_span,
    clip_masks_to_boxes,
    masks_to_boxes,
    point_pixels,
)

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
