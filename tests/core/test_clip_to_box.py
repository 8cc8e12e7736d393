"""Cutting box-prompt masks to their box (``mask_ops.clip_masks_to_boxes``)."""

from __future__ import annotations

import numpy as np

from napari_segany.core.mask_ops import clip_masks_to_boxes


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
