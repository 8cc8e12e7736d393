"""Tiling rules (``core.tiling``): the grid, the window a prompt gets, cut masks, and
the stitching of everything mode's windows."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.core.errors import InputError
from napari_segany.core.tiling import (
    Tiling,
    Window,
    choose_tiling,
    cut_sides,
    prompt_region,
    stitch,
    tile_windows,
    window_for,
)


@pytest.mark.parametrize("hw", [(1000, 700), (384, 2000), (97, 5000)])
def test_tiles_partition_the_plane_and_windows_keep_their_size(hw):
    tiling = Tiling(256, 64)
    windows = tile_windows(hw, tiling)
    owner = np.zeros(hw, int)
    for window in windows:
        y0, x0, y1, x1 = window.core_yxyx
        owner[y0:y1, x0:x1] += 1
        wy0, wx0, wy1, wx1 = window.yxyx
        assert 0 <= wy0 <= y0 and y1 <= wy1 <= hw[0] and 0 <= wx0 <= x0 and x1 <= wx1 <= hw[1]
        assert window.hw == (min(384, hw[0]), min(384, hw[1]))  # moved inward, not cut
    assert (owner == 1).all()


def test_auto_tiles_only_planes_longer_than_twice_the_frame():
    assert choose_tiling("auto", 1024, (2048, 2048)) is None
    assert choose_tiling("auto", 1024, (2049, 100)) == Tiling(768, 128)
    assert choose_tiling(None, 512, (9000, 9000)) is None
    assert choose_tiling((200, 50), 512, (301, 301)) == Tiling(200, 50)
    assert choose_tiling((200, 50), 512, (300, 300)) is None  # one window holds it
    for bad in ("always", (10, 5), (256,), (256.5, 3)):
        with pytest.raises(InputError, match="tiling"):
            choose_tiling(bad, 512, (100, 100))


def test_a_prompt_gets_the_window_holding_it_with_the_widest_margin():
    hw, tiling = (1000, 1000), Tiling(256, 64)
    windows = tile_windows(hw, tiling)
    region = prompt_region(np.array([[300.0, 330.0]]), None)
    chosen = window_for(region, windows, hw, tiling)
    y0, x0, y1, x1 = chosen.yxyx
    assert y0 <= 300 < y1 and x0 <= 330 < x1
    margins = [
        min(
            region[0] - w.yxyx[0],
            region[1] - w.yxyx[1],
            w.yxyx[2] - region[2],
            w.yxyx[3] - region[3],
        )
        for w in windows
    ]
    assert min(300 - y0, 330 - x0, y1 - 301, x1 - 331) == max(margins)
    wide = prompt_region(None, np.array([100.0, 100.0, 700.0, 500.0]))  # wider than a window
    own = window_for(wide, windows, hw, tiling)
    assert own.yxyx[0] <= 100 and own.yxyx[2] >= 700 and own.yxyx[1] <= 100 and own.yxyx[3] >= 500


def test_a_mask_is_cut_only_by_window_edges_inside_the_plane():
    window = Window((0, 100, 50, 150), (0, 100, 50, 150))
    mask = np.zeros((50, 50), bool)
    mask[0, 10] = True  # the plane's top edge: not a cut
    assert not cut_sides(mask, window, (200, 200))
    mask[10, 0] = True  # the window's left edge, inside the plane
    assert cut_sides(mask, window, (200, 200))


def test_stitching_keeps_each_object_once_and_merges_pieces():
    hw = (100, 160)
    left, right = (
        Window((0, 0, 100, 100), (0, 0, 100, 80)),
        Window((0, 60, 100, 160), (0, 80, 100, 160)),
    )
    seen_left, seen_right = np.zeros((100, 100), int), np.zeros((100, 100), int)
    seen_left[10:30, 10:30] = 1  # only the left window sees it
    seen_left[40:60, 70:90] = 2  # across the tiles' border (x = 80), centre x = 79.5: left's
    seen_right[40:60, 10:30] = 5  # the same object seen by the right window
    seen_left[70:90, 85:100] = 3  # a big object cut by the left window's edge ...
    seen_right[70:90, 25:60] = 7  # ... whose centre lies in the right tile
    labels, sources = stitch(hw, [(left, seen_left), (right, seen_right)])
    assert labels.max() == 3 and len(sources) == 3
    assert (labels[10:30, 10:30] == 1).all()
    assert len(np.unique(labels[40:60, 70:90])) == 1  # one object, no duplicate
    assert (labels[70:90, 85:120] == labels[75, 100]).all()  # kept by the right tile
    assert sources[1] == [(0, 2)]  # the right window's copy was not kept: its centre is left


def test_stitching_merges_objects_two_tiles_both_keep():
    hw = (100, 160)
    left, right = (
        Window((0, 0, 100, 100), (0, 0, 100, 80)),
        Window((0, 60, 100, 160), (0, 80, 100, 160)),
    )
    seen_left, seen_right = np.zeros((100, 100), int), np.zeros((100, 100), int)
    seen_left[40:60, 62:97] = 1  # centre x = 79: left keeps it
    seen_right[40:60, 3:38] = 1  # shifted by one pixel: centre x = 80, right keeps it too
    labels, sources = stitch(hw, [(left, seen_left), (right, seen_right)])
    assert labels.max() == 1 and sources == [[(0, 1), (1, 1)]]
    assert (labels[40:60, 62:98] == 1).all()
