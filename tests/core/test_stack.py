"""Plane addressing in nD stacks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.core.errors import ImageError
from napari_segany.core.stack import get_plane, plane_axes, plane_indices, plane_key


def test_plane_key_is_canonical_and_hashable():
    key = plane_key((np.int64(2), np.int32(0)))
    assert key == (2, 0) and all(type(i) is int for i in key)
    assert hash(key) == hash((2, 0))


def test_tzyx_planes():
    stack = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(get_plane(stack, (1, 2)), stack[1, 2])
    assert list(plane_indices(stack.shape)) == [(t, z) for t in range(2) for z in range(3)]
    assert list(plane_indices((4, 5))) == [()]
    np.testing.assert_array_equal(get_plane(stack[0, 0], ()), stack[0, 0])


def test_channel_axis_moves_last_and_spatial_axes_are_respected():
    stack = np.arange(3 * 2 * 4 * 5).reshape(3, 2, 4, 5)  # Z C Y X
    plane = get_plane(stack, (1,), channel_axis=1)
    assert plane.shape == (4, 5, 2)
    np.testing.assert_array_equal(plane[..., 1], stack[1, 1])
    assert plane_axes(4, channel_axis=1) == (0,)
    transposed = get_plane(stack, (0, 1), spatial_axes=(3, 2))  # X, Y swapped
    np.testing.assert_array_equal(transposed, stack[0, 1].T)


@pytest.mark.parametrize("index", [(3, 0), (0,), (0, 0, 0), (-1, 0)])
def test_bad_plane_index_raises(index):
    with pytest.raises(ImageError, match="Plane index"):
        get_plane(np.zeros((3, 2, 4, 5)), index)


def test_overlapping_axes_raise():
    with pytest.raises(ImageError, match="distinct"):
        plane_axes(3, spatial_axes=(-2, -1), channel_axis=2)
