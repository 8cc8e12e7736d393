"""Cutting box-prompt masks to their box and click masks to the clicked parts
(``mask_ops.clip_masks_to_boxes``, ``mask_ops.keep_clicked_components``)."""

from __future__ import annotations

import numpy as np

from napari_segany.core.mask_ops import clip_masks_to_boxes, keep_clicked_components


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
