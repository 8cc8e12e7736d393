"""Where prompts may lie on a plane, and the checks every entry point applies.

One rule for the API (``SegAny.segment`` -> ``Predictor.predict``), the widget's
prompt layers (``_layers.clip_prompts``) and scripts (``scripting``):

- a **point** ``(y, x)`` lies on an ``(H, W)`` plane when ``0 <= y < H`` and
  ``0 <= x < W``: it must fall on a pixel (pixel ``(r, c)`` spans ``[r, r + 1)`` x
  ``[c, c + 1)`` in the model's coordinates);
- a **box** ``(y0, x0, y1, x1)`` is valid when ``0 <= y0 <= y1 <= H`` and
  ``0 <= x0 <= x1 <= W``: its edges may lie *on* the plane's border, so end-exclusive
  boxes such as ``(0, 0, H, W)``, skimage's ``regionprops().bbox`` and everything
  mode's ``bbox_yxyx`` are accepted; only a box reaching beyond the plane is refused.

Checks raise :class:`~.errors.PromptError` with a short message (long lists of
values are cut, :func:`~.errors.describe_values`) and change nothing.
"""

from __future__ import annotations

import numpy as np

from .errors import PromptError, describe_values


def points_inside(points_yx: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(P,) bool: which (P, 2) (y, x) points lie on an (H, W) plane (``0 <= y < H``)."""
    points = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
    height, width = hw
    return (
        (points[:, 0] >= 0) & (points[:, 0] < height) & (points[:, 1] >= 0) & (points[:, 1] < width)
    )


def boxes_inside(boxes_yxyx: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N,) bool: which (N, 4) (y0, x0, y1, x1) boxes stay within ``[0, H] x [0, W]``.

    Edges on the border count as inside; the order of the corners is not checked here.
    """
    boxes = np.asarray(boxes_yxyx, dtype=np.float64).reshape(-1, 4)
    height, width = hw
    low_ok = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] >= 0) & (boxes[:, 3] >= 0)
    high_ok = (boxes[:, [0, 2]] <= height).all(axis=1) & (boxes[:, [1, 3]] <= width).all(axis=1)
    return low_ok & high_ok


def clip_boxes(boxes_yxyx: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N, 4) float64 boxes clipped to ``[0, H] x [0, W]`` (the valid range)."""
    boxes = np.asarray(boxes_yxyx, dtype=np.float64).reshape(-1, 4)
    height, width = hw
    return np.clip(boxes, 0.0, np.array([height, width, height, width], dtype=np.float64))


def finite_array(value, name: str) -> np.ndarray:
    """``value`` as a float64 array; :class:`PromptError` when not numeric or not finite."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PromptError(f"{name} must be numeric, got {describe_values(value)}.") from error
    bad = ~np.isfinite(array)
    if bad.any():
        raise PromptError(
            f"{name} contains NaN or infinite values ({int(bad.sum())} of {array.size}): "
            f"{describe_values(array[bad])}."
        )
    return array


def check_points(points_yx, labels, hw: tuple[int, int]):
    """Validated ((P, 2) float64 points, (P,) int64 labels), or (None, None) for no points."""
    if points_yx is None and labels is None:
        return None, None
    if points_yx is None or labels is None:
        raise PromptError("Give points_yx and labels together: one label (1 or 0) per point.")
    points = finite_array(points_yx, "points_yx")
    if points.size == 0 and np.size(labels) == 0:
        return None, None
    if points.ndim != 2 or points.shape[1] != 2:
        raise PromptError(f"points_yx must have shape (P, 2) as (y, x) rows, got {points.shape}.")
    label_array = finite_array(labels, "labels")
    if label_array.shape != (points.shape[0],):
        raise PromptError(
            f"labels must have shape ({points.shape[0]},), one per point, got {label_array.shape}."
        )
    wrong = ~np.isin(label_array, (0, 1))
    if wrong.any():
        raise PromptError(
            f"labels must be 1 (positive) or 0 (negative); {int(wrong.sum())} are not: "
            f"{describe_values(label_array[wrong])}."
        )
    outside = ~points_inside(points, hw)
    if outside.any():
        height, width = hw
        raise PromptError(
            f"points_yx has {int(outside.sum())} point(s) outside the image of shape "
            f"({height}, {width}): {describe_values(points[outside])}; a point (y, x) must "
            f"satisfy 0 <= y < {height} and 0 <= x < {width}."
        )
    return points, label_array.astype(np.int64)


def check_boxes(box_yxyx, hw: tuple[int, int]):
    """Validated ((N, 4) float64 boxes, whether batched) or (None, False) for no box."""
    if box_yxyx is None:
        return None, False
    boxes = finite_array(box_yxyx, "box_yxyx")
    if boxes.shape == (4,):
        boxes, batched = boxes[None], False
    elif boxes.ndim == 2 and boxes.shape[1] == 4 and boxes.shape[0] > 0:
        batched = True
    else:
        raise PromptError(
            f"box_yxyx must be (4,) or (N, 4) as (y0, x0, y1, x1), got shape {boxes.shape}."
        )
    reversed_ = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if reversed_.any():
        raise PromptError(
            "box_yxyx rows must be (y0, x0, y1, x1) with y0 <= y1 and x0 <= x1; "
            f"{int(reversed_.sum())} are not: {describe_values(boxes[reversed_])}."
        )
    outside = ~boxes_inside(boxes, hw)
    if outside.any():
        height, width = hw
        raise PromptError(
            f"box_yxyx has {int(outside.sum())} box(es) reaching outside the image of shape "
            f"({height}, {width}): {describe_values(boxes[outside])}; edges must lie in "
            f"0 <= y <= {height} and 0 <= x <= {width} (clip the box to the image)."
        )
    return boxes, batched


def check_mask_input(mask_input, n_objects: int, low_res_hw: tuple[int, int]):
    """Validated (N, 1, h, w) float32 mask logits, or None."""
    if mask_input is None:
        return None
    masks = finite_array(mask_input, "mask_input").astype(np.float32)
    if masks.shape in (low_res_hw, (1, *low_res_hw)):
        masks = np.repeat(masks.reshape(1, 1, *low_res_hw), n_objects, axis=0)
    elif masks.shape != (n_objects, 1, *low_res_hw):
        size = ", ".join(map(str, low_res_hw))
        raise PromptError(
            "mask_input must be the low-resolution `logits` of a previous prediction, of "
            f"shape ({size}), (1, {size}) or ({n_objects}, 1, {size}); got {masks.shape}."
        )
    return np.ascontiguousarray(masks)


def to_model_frame(
    values_yx: np.ndarray, input_hw: tuple[int, int], original_hw: tuple[int, int]
) -> np.ndarray:
    """Plane coordinates in (y, x) pairs -> model-frame (x, y) pairs, float64.

    Parameters
    ----------
    values_yx : numpy.ndarray, (..., 2k)
        Points (y, x) or boxes (y0, x0, y1, x1) in plane pixels.
    input_hw, original_hw : (int, int)
        The plane's size in the model frame and its own (``Embedding``).
    """
    scale_yx = np.array(input_hw, dtype=np.float64) / np.array(original_hw, dtype=np.float64)
    pairs = np.asarray(values_yx, dtype=np.float64).reshape(*np.shape(values_yx)[:-1], -1, 2)
    return np.ascontiguousarray((pairs * scale_yx)[..., ::-1]).reshape(np.shape(values_yx))
