"""Cutting box-prompt masks to their box and click masks to the clicked parts
(``mask_ops.clip_masks_to_boxes``, ``mask_ops.keep_clicked_components``, and everything
mode's ``mask_ops.clicked_component_statistics``)."""

from __future__ import annotations

import numpy as np
import torch

from napari_segany.core.mask_ops import (
    clicked_component_statistics,
    clip_masks_to_boxes,
    count_above,
    keep_clicked_components,
)


def test_an_integer_box_keeps_its_rows_and_columns_inclusive():
    masks = np.ones((3, 10, 12), dtype=bool)  # K = 3 candidates of one box
    clipped = clip_masks_to_boxes(masks, np.array([2, 3, 5, 7]))
    expected = np.zeros((10, 12), dtype=bool)
    expected[2:6, 3:8] = True
    assert clipped.shape == masks.shape and clipped.dtype == bool
    for candidate in clipped:
        np.testing.assert_array_equal(candidate, expected)
    assert masks.all()  # the input is not changed


def test_a_fractional_box_keeps_the_pixels_it_overlaps_by_more_than_an_edge():
    masks = np.ones((1, 10, 10), dtype=bool)
    # pixel r covers r - 0.5 .. r + 0.5: y0 = 2.4 overlaps pixel 2, y0 = 2.5 only touches it
    rows = clip_masks_to_boxes(masks, np.array([2.4, 0, 6.5, 9]))[0].any(axis=1)
    assert np.flatnonzero(rows).tolist() == [2, 3, 4, 5, 6]
    rows = clip_masks_to_boxes(masks, np.array([2.5, 0, 6.6, 9]))[0].any(axis=1)
    assert np.flatnonzero(rows).tolist() == [3, 4, 5, 6, 7]


def test_each_of_n_boxes_cuts_its_own_masks_and_edges_of_the_plane_hold():
    masks = np.ones((2, 1, 8, 8), dtype=bool)
    boxes = np.array([[0, 0, 2, 2], [5, 6, 7, 7]])  # touching the plane's corners
    clipped = clip_masks_to_boxes(masks, boxes)
    assert clipped[0, 0].sum() == 9 and clipped[0, 0, :3, :3].all()
    assert clipped[1, 0].sum() == 6 and clipped[1, 0, 5:, 6:].all()
    partial = np.zeros((2, 1, 8, 8), dtype=bool)
    partial[:, :, 1, 1] = True  # inside box 0, outside box 1
    assert clip_masks_to_boxes(partial, boxes).sum(axis=(1, 2, 3)).tolist() == [1, 0]


def test_a_click_keeps_only_the_parts_it_falls_on():
    masks = np.zeros((2, 12, 12), dtype=bool)
    masks[:, 1:4, 1:4] = True  # the clicked part
    masks[:, 8:11, 8:11] = True  # a separate part
    for step in range(4, 8):  # in candidate 1 a diagonal chain joins them (8-connected)
        masks[1, step, step] = True
    kept = keep_clicked_components(masks, np.array([[2.4, 1.6]]), np.array([1]))
    assert kept[0].sum() == 9 and kept[0, 1:4, 1:4].all()
    np.testing.assert_array_equal(kept[1], masks[1])  # one piece: nothing to drop
    assert masks[0, 8:11, 8:11].all()  # the input is not changed


def test_clicks_off_the_mask_and_negative_clicks_change_nothing():
    masks = np.zeros((1, 1, 10, 10), dtype=bool)
    masks[..., 0:3, 0:3] = True
    masks[..., 6:9, 6:9] = True
    # a positive click off the mask, a negative one on it: the mask stays whole
    points = np.array([[5.0, 5.0], [1.0, 1.0]])
    kept = keep_clicked_components(masks, points, np.array([1, 0]))
    np.testing.assert_array_equal(kept, masks)
    # two positive clicks on the two parts keep both; y 0.5 rounds to pixel row 1
    kept = keep_clicked_components(masks, np.array([[0.5, 1], [7, 7]]), np.array([1, 1]))
    np.testing.assert_array_equal(kept, masks)
    kept = keep_clicked_components(masks, np.array([[2.49, 2.0]]), np.array([1]))
    assert kept.sum() == 9 and kept[..., 0:3, 0:3].all()


def _two_blobs_and_a_faint_bridge() -> np.ndarray:
    """(12, 16) logits: blob A (rows 1-4, cols 1-4; its core 2-3 strongly positive),
    blob B (rows 7-10, cols 10-13), and a bridge between them whose logits lie between
    -1 and 0: part of the loose mask (> -1) only."""
    logits = np.full((12, 16), -5.0, dtype=np.float32)
    logits[1:5, 1:5] = 0.5
    logits[2:4, 2:4] = 3.0  # above the offset: the strict mask
    logits[7:11, 10:14] = 2.0
    logits[4, 5:11] = -0.5  # the bridge: row 4 from A's corner (4, 4), down column 10
    logits[5:7, 10] = -0.5
    return logits


def test_everything_masks_keep_the_part_under_their_point_and_its_stability():
    logits = _two_blobs_and_a_faint_bridge()
    on_a = np.array([[2.0, 2.0]])
    counts, masks = clicked_component_statistics(torch.from_numpy(logits[None]), on_a, 1.0)
    blob_a = np.zeros_like(masks[0])
    blob_a[1:5, 1:5] = True
    np.testing.assert_array_equal(masks[0], blob_a)  # blob B is dropped
    loose = logits > -1.0  # A, the bridge and B form one loose part
    bridge = 6 + 2  # row 4, cols 5-10, and column 10, rows 5-6
    assert loose.sum() == 16 + bridge + 16
    # strict: A's core only; area: A; loose: the loose part under the point, B included
    assert counts[0].tolist() == [4, 16, 16 + bridge + 16]


def test_everything_masks_whose_point_is_off_the_mask_stay_whole():
    logits = _two_blobs_and_a_faint_bridge()
    off = np.array([[0.0, 15.0]])  # background
    counts, masks = clicked_component_statistics(torch.from_numpy(logits[None]), off, 1.0)
    np.testing.assert_array_equal(masks[0], logits > 0)
    whole = count_above(torch.from_numpy(logits[None]), (1.0, 0.0, -1.0))
    np.testing.assert_array_equal(counts, whole)


def test_everything_masks_join_diagonal_neighbours_and_keep_each_masks_own_point():
    logits = np.full((3, 9, 9), -4.0, dtype=np.float32)
    for step in range(9):  # a diagonal line: one 8-connected part
        logits[:, step, step] = 2.0
    logits[:, 0, 8] = 2.0  # an isolated corner pixel
    points = np.array([[4.0, 4.0], [0.0, 8.0], [8.4, 8.4]])
    counts, masks = clicked_component_statistics(torch.from_numpy(logits), points, 1.0)
    assert masks[0].sum() == 9 and not masks[0, 0, 8]
    assert masks[1].sum() == 1 and masks[1, 0, 8]
    np.testing.assert_array_equal(masks[2], masks[0])
    assert counts[:, 1].tolist() == [9, 1, 9]
