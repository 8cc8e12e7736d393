"""Everything mode ``"apg"``'s rules on hand-made cases: where seeds prompt, which masks
mask NMS keeps, how the kept masks are painted (micro-sam's semantics; the whole
pipeline is compared with micro-sam's code in ``tests/test_oracle_apg.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.core.errors import InputError
from napari_segany.core.everything.apg import (
    ApgParams,
    grown_boxes_xyxy,
    interior_points_yx,
    seed_points_yx,
)
from napari_segany.core.everything.candidates import GridCandidates
from napari_segany.core.everything.mask_nms import mask_nms, paint_exclusive
from napari_segany.core.mask_ops import masks_to_boxes
from napari_segany.core.mask_runs import MaskRuns, encode_runs


def _candidates(masks: list[np.ndarray], iou: list[float], stability=None) -> GridCandidates:
    stack = np.stack(masks)
    height, width = stack.shape[1:]
    edges, counts, _ = encode_runs(stack)
    result = GridCandidates((height, width), ApgParams())
    result.crops_xyxy = [(0, 0, width, height)]
    result.runs = [MaskRuns(edges, np.concatenate([[0], np.cumsum(counts)]), (height, width))]
    result.crop_index = np.zeros(len(masks), np.int64)
    result.local_index = np.arange(len(masks))
    result.predicted_iou = np.asarray(iou, np.float32)
    result.stability_score = np.asarray(stability or [1.0] * len(masks), np.float32)
    result.area = stack.reshape(len(masks), -1).sum(1).astype(np.int64)
    result.boxes_xyxy = masks_to_boxes(stack)
    result.points_xy = np.zeros((len(masks), 2))
    return result


def _rect(y0, x0, y1, x1, shape=(40, 50)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_a_seed_prompts_at_its_most_interior_pixel():
    regions = np.zeros((20, 30), np.int32)
    regions[2:9, 3:10] = 1  # 7 x 7: its centre
    regions[12:16, 20:26] = 2  # 4 x 6: ties, the first in scan order
    regions[0, 14:18] = 3  # on the plane's border only: its first pixel
    np.testing.assert_array_equal(interior_points_yx(regions), [[5, 6], [13, 21], [0, 14]])


def test_seeds_need_foreground_centre_and_boundary_and_are_four_connected():
    foreground = np.ones((12, 12), np.float32)
    center = np.ones((12, 12), np.float32)
    boundary = np.zeros((12, 12), np.float32)
    center[2:5, 2:5] = 0.1
    center[5:8, 5:8] = 0.1  # touches the first only diagonally: a seed of its own
    center[9:11, 1:4] = 0.1
    foreground[9:11, 1:4] = 0.4  # not foreground
    points = seed_points_yx(foreground, center, boundary)
    np.testing.assert_array_equal(points, [[3, 3], [6, 6]])
    boundary[5:8, 5:8] = 0.6  # near a boundary: no seed
    assert len(seed_points_yx(foreground, center, boundary)) == 1


def test_nms_keeps_the_best_of_duplicates_and_distinct_objects():
    big = _rect(5, 5, 25, 25)
    near = _rect(5, 5, 25, 24)  # IoU 0.95 with big
    other = _rect(28, 30, 38, 45)
    inner = _rect(8, 8, 14, 14)  # inside big, IoU 0.09
    candidates = _candidates([big, near, other, inner], [0.8, 0.9, 0.7, 0.85])
    kept = mask_nms(candidates, np.arange(4), 0.9)
    np.testing.assert_array_equal(kept, [1, 3, 2])  # by score; big goes (IoU > 0.9)
    np.testing.assert_array_equal(mask_nms(candidates, np.arange(4), 0.96), [1, 3, 0, 2])
    # intersection over the smaller mask: the inner one is a duplicate too
    np.testing.assert_array_equal(mask_nms(candidates, np.arange(4), 0.9, True), [1, 2])


def test_painting_goes_largest_first_splits_and_drops_small_parts():
    wide = _rect(10, 0, 20, 50)
    tall = _rect(0, 20, 40, 34)  # larger (560 > 500 px): painted first, cuts wide in two
    speck = _rect(30, 0, 32, 2)  # 4 pixels
    candidates = _candidates([wide, tall, speck], [0.9, 0.8, 0.7])
    labels, source = paint_exclusive(candidates, np.array([0, 1, 2]), min_size=5)
    assert labels.max() == 3 and not labels[speck].any()
    np.testing.assert_array_equal(labels[tall], 1)  # ids in scan order of first pixels
    assert labels[15, 5] == 2 and labels[15, 45] == 3
    np.testing.assert_array_equal(source, [1, 0, 0])  # the parts keep their mask's scores
    labels, _ = paint_exclusive(candidates, np.array([0, 1, 2]), min_size=0)
    assert labels.max() == 4


def test_grown_boxes_stay_on_the_plane():
    boxes = grown_boxes_xyxy(np.array([[10, 20, 110, 60], [0, 0, 199, 99]]), (100, 200))
    np.testing.assert_allclose(boxes, [[9, 19.6, 111, 60.4], [0, 0, 200, 99.99]])


@pytest.mark.parametrize(
    "bad",
    [
        {"min_size": -1},
        {"min_size": 2.5},
        {"nms_threshold": 1.5},
        {"multimask": "yes"},
        {"prompts_per_batch": 0},
    ],  # fmt: skip
)
def test_bad_parameters_are_refused(bad):
    with pytest.raises(InputError, match=next(iter(bad))):
        ApgParams(**bad)
