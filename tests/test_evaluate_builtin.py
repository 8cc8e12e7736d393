"""The held-out evaluation's own arithmetic: matching F1 and the box-error breakdown."""

from __future__ import annotations

import numpy as np
import pytest
from training.evaluate_builtin import (
    _box_errors,
    _by_edge,
    _edge_pixels,
    best_overlap_iou,
    best_overlap_ious,
    box_error_pixels,
    matching_f1,
)


def _two_squares() -> np.ndarray:
    labels = np.zeros((20, 20), np.uint16)
    labels[5:10, 5:10] = 1
    labels[5:10, 10:15] = 2  # a touching neighbour on the right
    return labels


def test_box_errors_tell_rims_from_leaks():
    labels = _two_squares()
    mask = labels == 1
    predicted = mask.copy()
    predicted[5:10, 10:13] = True  # leak 3 columns into the neighbour, outside the box
    predicted[5, 5:10] = False  # miss the top row of the object
    counts = box_error_pixels(predicted, mask, labels, (5, 5, 9, 9))
    assert counts["fp"] == 15 and counts["fp_outside_box"] == 15
    assert counts["fp_on_objects"] == 15
    assert counts["fp_rim"] == 10  # columns 1 and 2 px from the outline; the third is 3 px
    assert counts["fn"] == 5 and counts["fn_rim"] == 5
    assert counts["inter"] == 20 and counts["union"] == 40
    shares = _box_errors([counts])
    assert shares["fp_rim_share"] == pytest.approx(10 / 15, abs=1e-3)
    # with the rim errors right only the third leaked column remains: 25 / 30
    assert shares["box_iou_rims_right"] == pytest.approx(25 / 30, abs=1e-3)


def test_a_leak_into_background_far_from_the_object_is_not_a_rim_error():
    labels = _two_squares()
    mask = labels == 1
    predicted = mask.copy()
    predicted[15:18, 0:3] = True  # a blob far away, on background, outside the box
    counts = box_error_pixels(predicted, mask, labels, (5, 5, 9, 9))
    assert counts["fp"] == 9 and counts["fp_outside_box"] == 9
    assert counts["fp_on_objects"] == 0 and counts["fp_rim"] == 0
    assert counts["fn"] == 0


def test_matching_f1_counts_one_to_one_matches_above_half_iou():
    truth = _two_squares()
    predicted = np.zeros_like(truth)
    predicted[5:10, 5:10] = 7  # object 1 exactly
    predicted[5:10, 10:12] = 8  # 2 of object 2's 5 columns: IoU 0.4, no match
    predicted[0:2, 0:2] = 9  # a false positive
    f1, precision, recall = matching_f1(truth, predicted)
    assert (precision, recall) == pytest.approx((1 / 3, 1 / 2))
    assert f1 == pytest.approx(2 * 1 / (2 + 3))


def test_calibration_scenes_are_not_the_held_out_ones_and_the_sweep_ranks_all():
    from training import calibrate_everything as calibration
    from training.evaluate_builtin import held_out_scenes

    from tests.fakes import tiny_session

    calibrated = [scene.labels for scene in calibration.calibration_scenes(4)]
    held_out = [scene.labels for scene in held_out_scenes(4)]
    for mine, theirs in zip(calibrated, held_out):  # same sizes, other scenes
        assert mine.shape == theirs.shape and not np.array_equal(mine, theirs)
    result = calibration.sweep(tiny_session(), 1, points_per_side=2, rule=True)
    table = result["table"]
    sizes = (calibration.PRED_IOU, calibration.STABILITY, calibration.BOX_NMS)
    assert len(table) == np.prod([len(values) for values in sizes])
    assert [row["f1"] for row in table] == sorted((row["f1"] for row in table), reverse=True)
    assert {row["crop_nms_thresh"] for row in table} == {0.7}  # no crops: SAM's, not swept
    crops = {"crop_n_layers": 1, "crop_n_points_downscale_factor": 2}
    with_crops = calibration.sweep(tiny_session(), 1, points_per_side=2, rule=True, crops=crops)
    assert len(with_crops["table"]) == len(table) * len(calibration.CROP_NMS)


def test_best_overlap_ious_equal_the_one_object_measure():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 9, (40, 50))
    found = rng.integers(0, 6, (40, 50)) * (rng.random((40, 50)) < 0.7)
    truth[truth == 3] = 0  # a missing label
    found[:, :8] = 0
    truth[:2, :8] = 11  # an object on the found background only: 0
    for min_area in (0, 200):
        labels = [i for i in np.unique(truth) if i and (truth == i).sum() >= max(min_area, 1)]
        expected = [best_overlap_iou(found, truth == i) for i in labels]
        np.testing.assert_allclose(best_overlap_ious(truth, found, min_area), expected)
    assert best_overlap_ious(truth, found, 0)[-1] == 0.0


def test_objects_cut_by_the_plane_edge_are_scored_apart():
    labels = np.zeros((6, 6), np.int32)
    labels[0, 1:3] = 1  # on the top row: cut by the edge
    labels[2:4, 2:4] = 2  # inside
    labels[3:6, 5] = 3  # on the right column
    edge = set(_edge_pixels(labels).tolist())
    assert edge == {0, 1, 3}
    at_edge = np.array([1 in edge, 2 in edge, 3 in edge])
    table = _by_edge(at_edge, np.array([0.2, 0.9, 0.4]), np.array([0.5, 1.0, 0.7]))
    assert table["cut by the edge"] == {"objects": 2, "click_iou": 0.3, "box_iou": 0.6}
    assert table["inside"] == {"objects": 1, "click_iou": 0.9, "box_iou": 1.0}
    assert list(_by_edge(np.array([False]), np.array([0.5]), np.array([0.5]))) == ["inside"]
