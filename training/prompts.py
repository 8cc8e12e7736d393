"""SAM-style prompt sampling for training: points inside objects, jittered boxes,
several points with negatives, clicks on background, and correction clicks drawn from
the error region of a prediction.

Coordinates are (x, y) pixels of the window; the caller adds the window's offset in the
model frame. Groups are decoded separately because a decoder call needs prompts of one
shape: single points (multimask, like a user's first click), boxes, and point sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

GROUPS = ("point", "box", "points")
MAX_POINTS = 4
MIN_PROMPT_AREA = 8  # px; smaller remnants (e.g. after zooming out) are not prompted


@dataclass
class PromptGroup:
    """N prompts of one kind, with their truth.

    Attributes
    ----------
    image_index : (N,) int64
        Window each prompt belongs to.
    truth : (N, S, S) bool
        Target mask (all False for a background click).
    background : (N,) bool
        The prompt is a click on background: target empty, predicted IoU target 0.
    points_xy : (N, P, 2) float32 or None
        Point prompts, (x, y) window pixels; label -1 rows are padding.
    point_labels : (N, P) int64 or None
        1 positive, 0 negative, -1 padding.
    boxes_xyxy : (N, 4) float32 or None
    """

    image_index: list[int] = field(default_factory=list)
    truth: list[np.ndarray] = field(default_factory=list)
    background: list[bool] = field(default_factory=list)
    points_xy: list[np.ndarray] = field(default_factory=list)
    point_labels: list[np.ndarray] = field(default_factory=list)
    boxes_xyxy: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_index)


def _pick_inside(rng: np.random.Generator, mask: np.ndarray, count: int) -> np.ndarray:
    """(count, 2) float (x, y) of pixels drawn uniformly from ``mask``."""
    ys, xs = np.nonzero(mask)
    chosen = rng.integers(0, len(ys), count)
    return np.stack([xs[chosen], ys[chosen]], axis=1).astype(np.float32)


def jittered_box(rng: np.random.Generator, mask: np.ndarray, outward: bool = False) -> np.ndarray:
    """(4,) float32 bounding box (x0, y0, x1, y1) of ``mask`` with each side moved by
    noise of std 10 % of the box side, at most 20 px (SAM's training recipe).

    With ``outward`` each side moves by the noise's magnitude away from the object
    (half-normal: the box still touches the object at times, and never cuts it), as a
    user draws a box around an object. The same random numbers are drawn either way.
    """
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)
    sides = np.array([box[2] - box[0], box[3] - box[1]] * 2, dtype=np.float32) + 1.0
    noise = rng.normal(0, 0.1, 4) * sides
    if outward:
        noise = np.abs(noise) * np.array([-1.0, -1.0, 1.0, 1.0])
    box += np.clip(noise, -20, 20).astype(np.float32)
    limit = mask.shape[1] - 1, mask.shape[0] - 1
    box[[0, 2]] = np.clip(box[[0, 2]], 0, limit[0])
    box[[1, 3]] = np.clip(box[[1, 3]], 0, limit[1])
    box[2], box[3] = max(box[2], box[0] + 1), max(box[3], box[1] + 1)
    return box


def _point_set(rng: np.random.Generator, mask: np.ndarray):
    """2-4 points: positives inside ``mask``, negatives anywhere outside it."""
    total = int(rng.integers(2, MAX_POINTS + 1))
    negatives = int(rng.integers(0, total))
    points = [_pick_inside(rng, mask, total - negatives)]
    outside = ~mask
    if negatives:
        points.append(_pick_inside(rng, outside, negatives))
    flags = np.array([1] * (total - negatives) + [0] * negatives)
    points_xy = np.zeros((MAX_POINTS, 2), np.float32)
    point_labels = np.full(MAX_POINTS, -1)
    points_xy[:total] = np.concatenate(points)
    point_labels[:total] = flags
    return points_xy, point_labels


def sample_prompts(
    rng: np.random.Generator,
    labels: np.ndarray,
    objects_per_image: int,
    background_rate: float = 0.5,
    outward_boxes: bool = False,
) -> dict[str, PromptGroup]:
    """Draw prompts for a batch of windows.

    Parameters
    ----------
    labels : (B, S, S) uint16
        Instance masks of the windows.
    objects_per_image : int
        At most this many objects are prompted per window (drawn without replacement).
    background_rate : float
        Probability of one background click per window (target: empty mask).
    outward_boxes : bool
        Jitter boxes outwards only (:func:`jittered_box`).

    Returns
    -------
    dict
        ``{"point": ..., "box": ..., "points": ...}`` prompt groups.
    """
    groups = {name: PromptGroup() for name in GROUPS}
    for index, window in enumerate(labels):
        areas = np.bincount(window.ravel())
        ids = np.nonzero(areas >= MIN_PROMPT_AREA)[0]
        ids = ids[ids > 0]
        chosen = rng.permutation(ids)[:objects_per_image]
        for object_id in chosen:
            mask = window == object_id
            kind = rng.choice(GROUPS, p=[0.45, 0.4, 0.15])
            group = groups[kind]
            group.image_index.append(index)
            group.truth.append(mask)
            group.background.append(False)
            if kind == "point":
                group.points_xy.append(_pick_inside(rng, mask, 1))
                group.point_labels.append(np.ones(1, np.int64))
            elif kind == "box":
                group.boxes_xyxy.append(jittered_box(rng, mask, outward_boxes))
            else:
                points_xy, point_labels = _point_set(rng, mask)
                group.points_xy.append(points_xy)
                group.point_labels.append(point_labels)
        empty = window == 0
        if rng.random() < background_rate and empty.sum() > 0.2 * empty.size:
            group = groups["point"]
            group.image_index.append(index)
            group.truth.append(np.zeros_like(empty))
            group.background.append(True)
            group.points_xy.append(_pick_inside(rng, empty, 1))
            group.point_labels.append(np.ones(1, np.int64))
    return groups


def correction_clicks(
    rng: np.random.Generator, predicted: np.ndarray, truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One click per prompt drawn uniformly from the error region of ``predicted``.

    A missed pixel gives a positive click, a wrongly included one a negative click.
    Without error the click is a positive inside the truth (or padding, -1, if the
    truth is empty).

    Parameters
    ----------
    predicted, truth : (N, S, S) bool

    Returns
    -------
    points_xy : (N, 1, 2) float32
    point_labels : (N, 1) int64
    """
    count = len(truth)
    points_xy = np.zeros((count, 1, 2), np.float32)
    point_labels = np.full((count, 1), -1, np.int64)
    for row in range(count):
        error = predicted[row] != truth[row]
        if error.any():
            point = _pick_inside(rng, error, 1)[0]
            x, y = int(point[0]), int(point[1])
            points_xy[row, 0] = point
            point_labels[row, 0] = int(truth[row][y, x])
        elif truth[row].any():
            points_xy[row, 0] = _pick_inside(rng, truth[row], 1)[0]
            point_labels[row, 0] = 1
    return points_xy, point_labels


def as_tensors(group: PromptGroup) -> dict[str, torch.Tensor | None]:
    """The group's lists stacked into tensors (None for absent prompt kinds)."""
    stacked: dict[str, torch.Tensor | None] = {
        "image_index": torch.as_tensor(group.image_index, dtype=torch.int64),
        "truth": torch.from_numpy(np.stack(group.truth)),
        "background": torch.as_tensor(group.background, dtype=torch.bool),
        "points_xy": None,
        "point_labels": None,
        "boxes_xyxy": None,
    }
    if group.points_xy:
        stacked["points_xy"] = torch.from_numpy(np.stack(group.points_xy))
        stacked["point_labels"] = torch.from_numpy(np.stack(group.point_labels))
    if group.boxes_xyxy:
        stacked["boxes_xyxy"] = torch.from_numpy(np.stack(group.boxes_xyxy))
    return stacked
