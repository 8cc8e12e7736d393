"""Operations on batches of binary masks for everything mode.

Boxes inside this module follow SAM's mask-generator convention: ``(x0, y0, x1, y1)``
with *inclusive* maxima (the last column / row of the mask), ``(0, 0, 0, 0)`` for an
empty mask. Masks are stored compactly as run lists (``core.mask_runs``).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.measure import label as label_components


def box_nms(boxes_xyxy: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression of boxes.

    Boxes are visited by decreasing score (ties in input order); a box is dropped when
    its IoU with an already kept box exceeds ``iou_threshold``. A box of zero area
    (NaN IoU) never suppresses nor is suppressed, as in torchvision.

    Parameters
    ----------
    boxes_xyxy : torch.Tensor, (N, 4)
        Boxes as (x0, y0, x1, y1); areas are ``(x1 - x0) * (y1 - y0)``.
    scores : torch.Tensor, (N,)
    iou_threshold : float

    Returns
    -------
    torch.Tensor, (K,) int64
        Indices of the kept boxes, by decreasing score.
    """
    count = int(boxes_xyxy.shape[0])
    if count == 0:
        return torch.empty(0, dtype=torch.int64)
    order = torch.argsort(scores.float().cpu(), descending=True, stable=True)
    boxes = boxes_xyxy.float().cpu()[order]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed = np.zeros(count, dtype=bool)
    kept = []
    for rank in range(count):
        if suppressed[rank]:
            continue
        kept.append(rank)
        if rank + 1 == count:
            break
        rest = boxes[rank + 1 :]
        top_left = torch.maximum(boxes[rank, :2], rest[:, :2])
        bottom_right = torch.minimum(boxes[rank, 2:], rest[:, 2:])
        overlap = (bottom_right - top_left).clamp(min=0).prod(dim=1)
        iou = overlap / (areas[rank] + areas[rank + 1 :] - overlap)
        suppressed[rank + 1 :] |= (iou > iou_threshold).numpy()
    return order[torch.as_tensor(kept, dtype=torch.int64)]


def masks_to_boxes(masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """Inclusive (x0, y0, x1, y1) box of each mask; (0, 0, 0, 0) for an empty mask.

    Parameters
    ----------
    masks : numpy.ndarray or torch.Tensor, (N, H, W) bool

    Returns
    -------
    numpy.ndarray, (N, 4) int64
    """
    if isinstance(masks, torch.Tensor) and masks.device.type != "cpu":
        return masks_to_boxes_torch(masks)
    masks = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    boxes = np.zeros((masks.shape[0], 4), dtype=np.int64)
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    for index in np.flatnonzero(rows.any(axis=1)):
        y0, y1 = _first_last(rows[index])
        x0, x1 = _first_last(cols[index])
        boxes[index] = (x0, y0, x1, y1)
    return boxes


def masks_to_boxes_torch(masks: torch.Tensor) -> np.ndarray:
    """:func:`masks_to_boxes` computed on the masks' device (e.g. CUDA), so that only
    the boxes travel to the host; the same result as the numpy version."""
    height, width = masks.shape[-2:]
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (N, H), (N, W)
    present = rows.any(dim=1, keepdim=True)
    y0 = rows.to(torch.uint8).argmax(dim=1)  # the first maximum: the first True
    y1 = height - 1 - rows.flip(1).to(torch.uint8).argmax(dim=1)
    x0 = cols.to(torch.uint8).argmax(dim=1)
    x1 = width - 1 - cols.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.int64) * present
    return boxes.cpu().numpy()


def _first_last(present: np.ndarray) -> tuple[int, int]:
    """Index of the first and the last True of a 1-D bool array with at least one."""
    return int(np.argmax(present)), int(present.size - 1 - np.argmax(present[::-1]))


def count_above(logits: torch.Tensor, thresholds: tuple[float, ...]) -> np.ndarray:
    """Pixels of each mask whose logit exceeds each threshold (``logits > t``).

    Parameters
    ----------
    logits : torch.Tensor, (N, H, W) float32
    thresholds : tuple of float

    Returns
    -------
    numpy.ndarray, (N, len(thresholds)) int64
    """
    if logits.device.type != "cpu":
        flat = logits.flatten(1)
        counts = [(flat > t).sum(1) for t in thresholds]
        return torch.stack(counts, 1).cpu().numpy().astype(np.int64)
    values = logits.numpy()
    counts = np.empty((values.shape[0], len(thresholds)), dtype=np.int64)
    for index, mask_logits in enumerate(values):  # one (H, W) bool temporary at a time
        for column, threshold in enumerate(thresholds):
            counts[index, column] = np.count_nonzero(mask_logits > np.float32(threshold))
    return counts


def boxes_near_crop_edge(
    boxes_xyxy: torch.Tensor, crop_xyxy: tuple[int, int, int, int], image_hw: tuple[int, int]
) -> torch.Tensor:
    """Which boxes (in crop frame) lie within 20 px of a crop edge that is not an image edge.

    Parameters
    ----------
    boxes_xyxy : torch.Tensor, (N, 4)
        Inclusive boxes relative to the crop's top-left corner.
    crop_xyxy : (int, int, int, int)
        The crop in the image, (x0, y0, x1, y1) with exclusive ends.
    image_hw : (int, int)

    Returns
    -------
    torch.Tensor, (N,) bool
    """
    crop = torch.tensor(crop_xyxy, dtype=torch.float32)
    image = torch.tensor([0, 0, image_hw[1], image_hw[0]], dtype=torch.float32)
    shifted = boxes_xyxy.float() + crop[[0, 1, 0, 1]]
    near_crop = (shifted - crop).abs() <= 20.0
    near_image = (shifted - image).abs() <= 20.0
    return (near_crop & ~near_image).any(dim=1)


def clicked_component_statistics(
    logits: torch.Tensor, points_yx: np.ndarray, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Everything mode's per-mask statistics with each mask reduced to its clicked part.

    For mask ``i`` prompted by point ``i``: when the point falls on the mask (logits >
    0), the mask becomes its connected part (8-connected) under the point, the strict
    mask (logits > ``offset``) is restricted to that part, and the loose mask (logits
    > ``-offset``) becomes its own connected part under the point, so that the
    stability score (strict / loose) is that of the clicked object. A mask the point
    does not fall on is kept whole, as :func:`keep_clicked_components` does. Point
    ``(y, x)`` falls on pixel ``(floor(y + 0.5), floor(x + 0.5))``.

    Parameters
    ----------
    logits : torch.Tensor, (N, H, W) float32
        Full-resolution logits (any device; the work is done on the host).
    points_yx : numpy.ndarray, (N, 2) float
        The prompting point of each mask, (row, col) in the masks' frame.
    offset : float
        SAM's stability score offset.

    Returns
    -------
    counts : numpy.ndarray, (N, 3) int64
        Pixels of the strict mask, the mask and the loose mask (as :func:`count_above`
        with thresholds ``(offset, 0, -offset)`` gives for whole masks).
    masks : numpy.ndarray, (N, H, W) bool
    """
    values = logits.detach().cpu().numpy()
    rows, cols = point_pixels(points_yx, values.shape[-2:])
    counts = np.empty((values.shape[0], 3), dtype=np.int64)
    masks = np.empty(values.shape, dtype=bool)
    strict_t, loose_t = np.float32(offset), np.float32(-offset)
    for index, mask_logits in enumerate(values):
        mask = np.greater(mask_logits, 0.0, out=masks[index])
        strict, loose = mask_logits > strict_t, mask_logits > loose_t
        row, col = rows[index], cols[index]
        if mask[row, col]:  # else the mask stays whole
            mask[...] = _component_at(mask, row, col)
            strict &= mask
            loose = _component_at(loose, row, col)
        counts[index] = (np.count_nonzero(strict), np.count_nonzero(mask), np.count_nonzero(loose))
    return counts, masks


def point_pixels(points_yx: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels (H, W) points (P, 2) (y, x) fall on: ``floor(v + 0.5)``
    (pixel centres at integers, napari's convention), clipped to the plane."""
    pixels = np.floor(np.asarray(points_yx, dtype=np.float64).reshape(-1, 2) + 0.5)
    pixels = pixels.astype(np.intp)
    return np.clip(pixels[:, 0], 0, hw[0] - 1), np.clip(pixels[:, 1], 0, hw[1] - 1)


def _component_at(mask: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 8-connected part of ``mask`` (H, W) bool holding pixel (row, col) (which is
    True); labelled within the mask's bounding box only."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    window = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    regions = label_components(mask[window], connectivity=2)
    part = np.zeros_like(mask)
    part[window] = regions == regions[row - rows[0], col - cols[0]]
    return part


def clip_masks_to_boxes(masks: np.ndarray, boxes_yxyx: np.ndarray) -> np.ndarray:
    """Masks with every pixel outside their box set to False.

    Pixel ``(r, c)`` covers ``r - 0.5 .. r + 0.5`` (napari's convention); it is kept
    when it overlaps the box by more than an edge: ``y0 - 0.5 < r < y1 + 0.5``, so an
    integer box keeps rows ``y0..y1`` inclusive.

    Parameters
    ----------
    masks : numpy.ndarray, (K, H, W) or (N, K, H, W) bool
    boxes_yxyx : numpy.ndarray, (4,) or (N, 4) float
        One box, or one per leading mask axis, as (y0, x0, y1, x1).

    Returns
    -------
    numpy.ndarray
        A new array of the masks' shape.
    """
    boxes = np.asarray(boxes_yxyx, dtype=np.float64).reshape(-1, 4)
    stacked = masks.reshape((len(boxes),) + masks.shape[-3:])
    clipped = np.zeros_like(stacked)
    for index, box in enumerate(boxes):
        r0, r1, c0, c1 = box_pixel_span(box, masks.shape[-2:])
        clipped[index, :, r0:r1, c0:c1] = stacked[index, :, r0:r1, c0:c1]
    return clipped.reshape(masks.shape)


def box_pixel_span(box_yxyx: np.ndarray, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)``: rows ``r0..r1-1`` and columns ``c0..c1-1`` of an (H, W)
    plane that a (4,) box (y0, x0, y1, x1) keeps (:func:`clip_masks_to_boxes`' rule;
    empty ranges for a box outside the plane)."""
    y0, x0, y1, x1 = (float(v) for v in box_yxyx)
    r0, c0 = max(int(np.floor(y0 - 0.5)) + 1, 0), max(int(np.floor(x0 - 0.5)) + 1, 0)
    r1, c1 = min(int(np.ceil(y1 + 0.5)), hw[0]), min(int(np.ceil(x1 + 0.5)), hw[1])
    return r0, max(r1, r0), c0, max(c1, c0)


def keep_clicked_components(
    masks: np.ndarray, points_yx: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Masks reduced to their connected parts (8-connected) under a positive click.

    A mask that no positive click falls on is returned unchanged, as is every mask
    when no click is positive. Point ``(y, x)`` falls on pixel
    ``(floor(y + 0.5), floor(x + 0.5))`` (pixel centres at integers, napari's
    convention).

    Parameters
    ----------
    masks : numpy.ndarray, (K, H, W) or (N, K, H, W) bool
    points_yx : numpy.ndarray, (P, 2) float
        Clicks inside the plane, as (row, col).
    labels : numpy.ndarray, (P,) int
        1 for a positive click, 0 for a negative one.

    Returns
    -------
    numpy.ndarray
        A new array of the masks' shape.
    """
    height, width = masks.shape[-2:]
    positive = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)[np.asarray(labels) == 1]
    rows, cols = point_pixels(positive, (height, width))
    flat = masks.reshape((-1, height, width))
    kept = flat.copy()
    for index, mask in enumerate(flat):
        if not mask[rows, cols].any():
            continue
        regions = label_components(mask, connectivity=2)
        clicked = np.unique(regions[rows, cols])
        kept[index] = np.isin(regions, clicked[clicked > 0])
    return kept.reshape(masks.shape)


def remove_small_regions(
    mask: np.ndarray, area_threshold: int, mode: str, outside: tuple[int, ...] = (0, 0, 0, 0)
) -> tuple[np.ndarray, bool]:
    """Fill small holes or drop small islands (8-connected), as SAM's generator does.

    ``mode="holes"`` fills background components smaller than ``area_threshold``;
    ``mode="islands"`` drops foreground components smaller than it, keeping the largest
    one if all are small. ``mask`` may be a window of a larger all-background image:
    ``outside`` gives the pixel count of the background beyond each side of the window
    (top, bottom, left, right; top/bottom bands span the full image width), so
    components touching the window's edge get their true size.

    Returns
    -------
    mask : numpy.ndarray, (h, w) bool, or None
        None when a small hole reaches beyond the window (then redo it on the whole
        image; this needs a mask covering nearly all of it).
    changed : bool
        Whether any small region was found (the mask may still be unchanged).
    """
    holes = mode == "holes"
    working, weights = _framed(~mask if holes else mask, outside)
    regions = label_components(working, connectivity=2)
    sizes = np.bincount(regions.ravel(), weights=weights.ravel())[1:]
    small = np.flatnonzero(sizes < area_threshold) + 1
    if small.size == 0:
        return mask, False
    inner = regions[1:-1, 1:-1]
    if holes:
        frame = np.concatenate([regions[[0, -1]].ravel(), regions[:, [0, -1]].ravel()])
        if np.isin(small, frame).any():
            return None, True
        return mask | np.isin(inner, small), True
    large = np.setdiff1d(np.arange(1, sizes.size + 1), small)
    if large.size == 0:
        large = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(inner, large), True


def _framed(working: np.ndarray, outside: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``working`` inside a one-pixel frame standing for the background outside it.

    A side of the frame is True (part of the background) only where ``outside`` has
    pixels; one pixel per side carries their count as weight, corners weigh nothing.
    """
    top, bottom, left, right = (int(v) > 0 for v in outside)
    framed = np.zeros((working.shape[0] + 2, working.shape[1] + 2), dtype=bool)
    framed[1:-1, 1:-1] = working
    weights = framed.astype(np.float64)
    for present, row, col, count in (
        (top, 0, slice(1, -1), outside[0]),
        (bottom, -1, slice(1, -1), outside[1]),
        (left, slice(1, -1), 0, outside[2]),
        (right, slice(1, -1), -1, outside[3]),
    ):
        if present:
            framed[row, col] = True
            weights[row, col] = 0.0
            weights[(row, 1) if isinstance(col, slice) else (1, col)] = count
    for (r, c), sides in (((0, 0), top and left), ((0, -1), top and right)):
        framed[r, c] = sides
    for (r, c), sides in (((-1, 0), bottom and left), ((-1, -1), bottom and right)):
        framed[r, c] = sides
    return framed, weights
