"""Everything mode, phase 2: from decoded grid masks to a label image (no model).

Order of operations (SAM's generator): drop masks near inner crop edges and below the
thresholds (``predicted_iou > pred_iou_thresh``, ``stability_score >=
stability_score_thresh``, each only when the threshold is > 0); box NMS within each
crop by predicted IoU; box NMS across crops preferring smaller crops; with
``min_mask_region_area > 0``, fill small holes, drop small islands and NMS again
preferring untouched masks. Then :func:`napari_segany.core.labels.paint_masks`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import InputError
from ..labels import paint_masks
from ..mask_ops import box_nms, remove_small_regions
from .resolution import warn_small_objects

if TYPE_CHECKING:
    from .grid import GridCandidates

logger = logging.getLogger(__name__)


class EmptyResultWarning(UserWarning):
    """Everything mode kept no mask; the message says which threshold to lower."""


@dataclass(frozen=True)
class FilterParams:
    """Parameters of the cheap phase (SAM's meanings); changing them needs no model."""

    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    crop_nms_thresh: float = 0.7
    min_mask_region_area: int = 0

    def __post_init__(self) -> None:
        for name in ("pred_iou_thresh", "stability_score_thresh"):
            if not np.isfinite(float(getattr(self, name))):
                raise InputError(f"{name} must be a finite number, got {getattr(self, name)}.")
        for name in ("box_nms_thresh", "crop_nms_thresh"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise InputError(f"{name} must be in [0, 1] (1.0 disables NMS).")
        if int(self.min_mask_region_area) != self.min_mask_region_area or (
            self.min_mask_region_area < 0
        ):
            raise InputError("min_mask_region_area must be an integer >= 0 (0 disables it).")


@dataclass(frozen=True)
class EverythingObject:
    """One segmented object (a kept mask).

    Attributes
    ----------
    label : int
        Its value in the label image.
    area : int
        Mask pixels before painting (other objects may cover some).
    visible_area : int
        Pixels carrying ``label`` in the label image.
    bbox_yxyx : (int, int, int, int)
        (y0, x0, y1, x1) of the mask, ends exclusive (``mask[y0:y1, x0:x1]``).
    predicted_iou, stability_score : float
        SAM's quality scores.
    point_yx : (float, float)
        Grid point that prompted the mask, in plane pixels.
    crop_box_yxyx : (int, int, int, int)
        Crop it was decoded in, ends exclusive.
    plane : tuple of int
        Plane index in a stack (``()`` for a single plane).
    """

    label: int
    area: int
    visible_area: int
    bbox_yxyx: tuple[int, int, int, int]
    predicted_iou: float
    stability_score: float
    point_yx: tuple[float, float]
    crop_box_yxyx: tuple[int, int, int, int]
    plane: tuple[int, ...] = ()


@dataclass(frozen=True)
class EverythingResult:
    """Label image and per-object records of everything mode on one plane.

    Attributes
    ----------
    labels : numpy.ndarray, (H, W) uint32
        0 = background; objects painted largest first, so smaller ones stay on top.
    objects : list of EverythingObject
        Sorted by label (= by decreasing area).
    n_candidates : int
        Masks decoded before any filtering.
    windows : list of (y0, x0, numpy.ndarray bool)
        Each object's full mask (before painting) on its box, in ``objects`` order.
    """

    labels: np.ndarray
    objects: list[EverythingObject]
    n_candidates: int = 0
    windows: list = field(default_factory=list, repr=False)

    def mask(self, position: int) -> np.ndarray:
        """Full (H, W) bool mask of ``objects[position]`` before painting."""
        y0, x0, window = self.windows[position]
        full = np.zeros(self.labels.shape, dtype=bool)
        full[y0 : y0 + window.shape[0], x0 : x0 + window.shape[1]] = window
        return full


@dataclass
class _Kept:
    """Masks surviving the filters: candidate indices and, per mask, a window."""

    index: np.ndarray  # (K,) into GridCandidates
    windows: list  # (y0, x0, bool array) in plane pixels
    boxes_xyxy: np.ndarray  # (K, 4) inclusive, plane pixels


def select(candidates: GridCandidates, filters: FilterParams) -> EverythingResult:
    """Apply phase 2 to ``candidates`` (see the module docstring).

    Warns with :class:`EmptyResultWarning` when the thresholds leave nothing, and with
    :class:`~napari_segany.core.errors.SmallObjectsWarning` when the objects were too
    small for the pass (:mod:`.resolution`, when ``candidates.resolution`` is set).
    """
    passing = _passing(candidates, filters)
    if candidates.predicted_iou.size and not passing.any():
        _warn_empty(candidates, filters)
    index = _nms_per_crop(candidates, passing, filters.box_nms_thresh)
    offsets = np.array([[c[0], c[1], c[0], c[1]] for c in candidates.crops_xyxy])
    boxes = candidates.boxes_xyxy[index] + offsets[candidates.crop_index[index]]
    if len(candidates.crops_xyxy) > 1 and index.size:
        crop_areas = np.array([(c[2] - c[0]) * (c[3] - c[1]) for c in candidates.crops_xyxy])
        scores = 1.0 / torch.as_tensor(crop_areas[candidates.crop_index[index]], dtype=torch.int64)
        order = box_nms(torch.as_tensor(boxes), scores, filters.crop_nms_thresh).numpy()
        index, boxes = index[order], boxes[order]
    kept = _Kept(index, [], boxes)
    margin = 1 if filters.min_mask_region_area > 0 else 0
    kept.windows = [mask_window(candidates, i, b, margin) for i, b in zip(index, boxes)]
    areas = candidates.area[index]
    if filters.min_mask_region_area > 0 and index.size:
        nms = max(filters.box_nms_thresh, filters.crop_nms_thresh)
        kept, areas = _clean_small_regions(candidates, kept, filters.min_mask_region_area, nms)
    warn_small_objects(candidates.resolution, areas, len(candidates))
    return _result(candidates, kept, areas)


def _passing(candidates: GridCandidates, filters: FilterParams) -> np.ndarray:
    keep = ~candidates.near_crop_edge
    if filters.pred_iou_thresh > 0.0:
        keep &= candidates.predicted_iou > np.float32(filters.pred_iou_thresh)
    if filters.stability_score_thresh > 0.0:
        keep &= candidates.stability_score >= np.float32(filters.stability_score_thresh)
    return keep


def _nms_per_crop(candidates: GridCandidates, passing: np.ndarray, threshold: float) -> np.ndarray:
    """Indices surviving NMS within their crop, crop by crop, by decreasing IoU score."""
    kept = []
    for crop_id in range(len(candidates.crops_xyxy)):
        index = np.flatnonzero(passing & (candidates.crop_index == crop_id))
        boxes = torch.as_tensor(candidates.boxes_xyxy[index])
        scores = torch.as_tensor(candidates.predicted_iou[index])
        kept.append(index[box_nms(boxes, scores, threshold).numpy()])
    return np.concatenate(kept) if kept else np.zeros(0, np.int64)


def mask_window(candidates: GridCandidates, index: int, box_xyxy, margin: int):
    """Mask ``index`` on its box (grown by ``margin``, clipped), as (y0, x0, bool array)."""
    height, width = candidates.image_hw
    x0, y0 = max(int(box_xyxy[0]) - margin, 0), max(int(box_xyxy[1]) - margin, 0)
    x1, y1 = min(int(box_xyxy[2]) + 1 + margin, width), min(int(box_xyxy[3]) + 1 + margin, height)
    crop_x0, crop_y0, crop_x1, crop_y1 = candidates.crops_xyxy[candidates.crop_index[index]]
    window = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    row0, row1 = max(y0, crop_y0), min(y1, crop_y1)
    col0, col1 = max(x0, crop_x0), min(x1, crop_x1)
    if row1 > row0 and col1 > col0:
        runs = candidates.runs[candidates.crop_index[index]]
        rows = runs.decode_rows(int(candidates.local_index[index]), row0 - crop_y0, row1 - crop_y0)
        window[row0 - y0 : row1 - y0, col0 - x0 : col1 - x0] = rows[
            :, col0 - crop_x0 : col1 - crop_x0
        ]
    return y0, x0, window


def _clean_small_regions(candidates: GridCandidates, kept: _Kept, min_area: int, nms: float):
    """Fill small holes, drop small islands, then NMS preferring unchanged masks."""
    windows, unchanged = [], []
    for y0, x0, window in kept.windows:
        cleaned, changed = _clean_window(candidates.image_hw, y0, x0, window, min_area)
        windows.append(cleaned)
        unchanged.append(0.0 if changed else 1.0)
    boxes = np.array([_window_box(w) for w in windows], dtype=np.int64).reshape(-1, 4)
    order = box_nms(torch.as_tensor(boxes), torch.tensor(unchanged), nms).numpy()
    areas = np.array([int(windows[i][2].sum()) for i in order], dtype=np.int64)
    return _Kept(kept.index[order], [windows[i] for i in order], boxes[order]), areas


def _clean_window(image_hw, y0: int, x0: int, window: np.ndarray, min_area: int):
    height, width = image_hw
    y1, x1 = y0 + window.shape[0], x0 + window.shape[1]
    outside = (y0 * width, (height - y1) * width, (y1 - y0) * x0, (y1 - y0) * (width - x1))
    filled, holes_changed = remove_small_regions(window, min_area, "holes", outside)
    if filled is None:  # a small "hole" reaches outside the window: use the whole plane
        full = np.zeros(image_hw, dtype=bool)
        full[y0:y1, x0:x1] = window
        filled, _ = remove_small_regions(full, min_area, "holes")
        y0, x0 = 0, 0
    cleaned, islands_changed = remove_small_regions(filled, min_area, "islands")
    return (y0, x0, cleaned), holes_changed or islands_changed


def _window_box(window) -> tuple[int, int, int, int]:
    """Inclusive (x0, y0, x1, y1) in plane pixels of a window's mask; zeros if empty."""
    y0, x0, mask = window
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return (x0 + cols[0], y0 + rows[0], x0 + cols[-1], y0 + rows[-1])


def _result(candidates: GridCandidates, kept: _Kept, areas: np.ndarray) -> EverythingResult:
    labels, label_of = paint_masks(candidates.image_hw, kept.windows, areas)
    visible = np.bincount(labels.ravel(), minlength=len(kept.index) + 1)
    objects, windows = [], []
    for position in np.argsort(label_of, kind="stable"):
        windows.append(kept.windows[position])
        index = kept.index[position]
        x0, y0, x1, y1 = (int(v) for v in kept.boxes_xyxy[position])
        box = (0, 0, 0, 0) if areas[position] == 0 else (y0, x0, y1 + 1, x1 + 1)
        cx0, cy0, cx1, cy1 = candidates.crops_xyxy[candidates.crop_index[index]]
        point_x, point_y = candidates.points_xy[index]
        objects.append(
            EverythingObject(
                label=int(label_of[position]),
                area=int(areas[position]),
                visible_area=int(visible[label_of[position]]),
                bbox_yxyx=box,
                predicted_iou=float(candidates.predicted_iou[index]),
                stability_score=float(candidates.stability_score[index]),
                point_yx=(float(point_y), float(point_x)),
                crop_box_yxyx=(cy0, cx0, cy1, cx1),
            )
        )
    return EverythingResult(labels, objects, len(candidates), windows)


def _warn_empty(candidates: GridCandidates, filters: FilterParams) -> None:
    """Explain an empty result: the scores seen and which threshold to lower."""
    usable = ~candidates.near_crop_edge
    iou = candidates.predicted_iou[usable]
    stability = np.nan_to_num(candidates.stability_score[usable], nan=0.0)
    if iou.size == 0:
        message = "Everything mode kept no mask: every mask touched an inner crop edge."
    else:
        by_iou = int((iou > filters.pred_iou_thresh).sum())
        by_stability = int((stability >= filters.stability_score_thresh).sum())
        advice = [  # only thresholds that are on (> 0) and above the suggestion
            f"{name} (e.g. to {suggested:.2f})"
            for name, threshold, suggested in (
                ("pred_iou_thresh", filters.pred_iou_thresh, np.quantile(iou, 0.9)),
                (
                    "stability_score_thresh",
                    filters.stability_score_thresh,
                    np.quantile(stability, 0.9),
                ),
            )
            if 0 < threshold and suggested < threshold
        ]
        message = (
            f"Everything mode kept no mask out of {iou.size}. Predicted IoU ranged "
            f"{iou.min():.3f}..{iou.max():.3f} (median {np.median(iou):.3f}); "
            f"{by_iou} passed pred_iou_thresh={filters.pred_iou_thresh}. Stability score "
            f"ranged {stability.min():.3f}..{stability.max():.3f} (median "
            f"{np.median(stability):.3f}); {by_stability} passed "
            f"stability_score_thresh={filters.stability_score_thresh}. "
            + (f"Lower {' and/or '.join(advice)}." if advice else "No threshold to lower.")
        )
    logger.warning(message)
    warnings.warn(message, EmptyResultWarning, stacklevel=3)
