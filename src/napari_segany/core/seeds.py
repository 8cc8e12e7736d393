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
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.segmentation import watershed

from .embeddings import Embedding
from .mask_ops import clip_masks_to_boxes, point_pixels
from .model.foreground_head import BORDER, FOREGROUND
from .model.sam import Sam

SEED_FOREGROUND_LOGIT = 0.5
SEED_BORDER_LOGIT = -1.0
MIN_SEED_AREA = 4  # model-frame pixels
EXTENT_LOGIT = -0.5  # objects grow a little past the head's 50 % foreground line
CLICK_AGREEMENT_IOU = 0.5  # training/calibrate_snap.py


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


def plane_objects(logits: np.ndarray, embedding: Embedding) -> tuple[np.ndarray, np.ndarray]:
    """:func:`seeded_objects` of :func:`head_logits`, with :data:`MIN_SEED_AREA`
    (model-frame pixels) converted to the plane's pixels."""
    height, width = embedding.original_hw
    frame_pixels = embedding.input_hw[0] * embedding.input_hw[1]
    min_area = max(1, round(MIN_SEED_AREA * height * width / frame_pixels))
    return seeded_objects(logits[FOREGROUND], logits[BORDER], min_area)


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
) -> np.ndarray:
    """Answer a prompt with the object of the foreground head it designates.

    - Clicks without a box: when every positive click falls on the same object, no
      negative click does, and the best-scored mask agrees with the object (IoU at
      least ``agreement_iou``), that mask becomes the object; the object
      then mends the mask's rim and leaks, while a head that merged neighbours or
      split the nucleus leaves the decoder's mask. The other candidates stay the
      decoder's, to cycle through.
    - Boxes without clicks: each mask becomes the object that most of its pixels fall
      on, cut to the box (so it never reaches past the box drawn).
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
                if _iou(flat[index, candidate], found) >= agreement_iou:
                    flat[index, candidate] = found
        return snapped
    if boxes_yxyx is not None and points_yx is None:
        boxes = np.asarray(boxes_yxyx, dtype=np.float64).reshape(-1, 4)
        stacked = snapped.reshape((len(boxes),) + masks.shape[-3:])
        for index, box in enumerate(boxes):
            for candidate, mask in enumerate(stacked[index]):
                votes = np.bincount(objects[mask], minlength=1)
                votes[0] = 0
                if votes.max() > 0:
                    found = (objects == votes.argmax())[None]
                    stacked[index, candidate] = clip_masks_to_boxes(found, box)[0]
    return snapped


def _iou(first: np.ndarray, second: np.ndarray) -> float:
    union = np.count_nonzero(first | second)
    return np.count_nonzero(first & second) / union if union else 0.0
