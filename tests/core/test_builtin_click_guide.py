"""The snapped click's guide: window, two views, equivariance (core.click_guide)."""

from __future__ import annotations

import numpy as np
import torch

from napari_segany.core.model.build import build_sam
from napari_segany.core.predictor import Predictor
from napari_segany.models.builtin import click_guide


def _predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(build_sam("conv_s"), device="cpu")


def test_the_window_is_the_plane_unzoomed_and_the_tile_owning_the_click_zoomed():
    assert click_guide.click_window((100, 200), 1, np.array([[70.0, 150.0]])) == (0, 100, 0, 200)
    # zoom 2: the lower right tile owns rows 50-99 and columns 100-199; its margin is
    # 1/16 of the plane (6 rows, 12 columns)
    window = click_guide.click_window((100, 200), 2, np.array([[70.0, 150.0]]))
    assert window == (44, 100, 88, 200)
    # a second click in the margin keeps the window; one in another tile has none
    both = np.array([[70.0, 150.0], [46.0, 150.0]])
    assert click_guide.click_window((100, 200), 2, both) == window
    spread = np.array([[70.0, 150.0], [10.0, 150.0]])
    assert click_guide.click_window((100, 200), 2, spread) is None
    # the first click decides; a click half a pixel before row 50 is on row 50
    assert click_guide.click_window((100, 200), 2, np.array([[49.5, 10.0]]))[:2] == (44, 100)


def _guide(predictor, rgb, window, points_yx, labels):
    views = tuple(map(predictor.embed, click_guide.window_views(rgb, window)))
    return click_guide.guide_mask(
        predictor, views, window, rgb.shape[:2], np.asarray(points_yx), np.asarray(labels)
    )


def test_the_guide_of_the_turned_plane_is_the_guide_turned():
    """Both views enter alike: turning the plane and the clicks swaps them."""
    predictor = _predictor()
    rgb = np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    turned = np.ascontiguousarray(rgb[::-1, ::-1])
    points, labels = np.array([[20.0, 30.0], [41.0, 70.0]]), np.array([1, 0])
    whole = (0, 60, 0, 90)
    guide = _guide(predictor, rgb, whole, points, labels)
    again = _guide(predictor, turned, whole, np.array([59.0, 89.0]) - points, labels)
    assert 0 < guide.sum() < guide.size  # a real mask, not all or nothing
    np.testing.assert_array_equal(again, guide[::-1, ::-1])
    # one view alone is not the guide: the second view changes the mask
    single = predictor.predict(predictor.embed(rgb), points, labels)
    assert not np.array_equal(single.masks[int(np.argmax(single.scores))], guide)


def test_a_windows_guide_is_the_guide_of_the_window_as_a_plane():
    predictor = _predictor()
    rgb = np.random.default_rng(1).integers(0, 255, (80, 120, 3), dtype=np.uint8)
    window = (10, 70, 40, 110)
    points = np.array([[30.0, 60.0]])
    guide = _guide(predictor, rgb, window, points, [1])
    assert not guide[:10].any() and not guide[70:].any()
    assert not guide[:, :40].any() and not guide[:, 110:].any()
    crop = np.ascontiguousarray(rgb[10:70, 40:110])
    alone = _guide(predictor, crop, (0, 60, 0, 70), points - (10, 40), [1])
    np.testing.assert_array_equal(guide[10:70, 40:110], alone)


def test_clicks_on_the_windows_last_half_pixel_are_decoded():
    """A click up to half a pixel past the last pixel's centre falls on that pixel: it
    is decoded there in both views, not refused as outside the window."""
    predictor = _predictor()
    rgb = np.random.default_rng(2).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    edge = _guide(predictor, rgb, (0, 40, 0, 50), np.array([[39.4, 49.4]]), [1])
    centre = _guide(predictor, rgb, (0, 40, 0, 50), np.array([[39.0, 49.0]]), [1])
    assert (edge != centre).mean() < 0.05  # nearly the same click
