"""Small helpers to address 2D planes (optionally with channels) in nD stacks.

A stack has two *spatial* axes (the plane, default the last two) and optionally a
*channel* axis; every other axis (Z, T, ...) is a *plane axis*. A plane is addressed by
its index along the plane axes, in axis order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from .errors import ImageError


def plane_key(index: Sequence[int]) -> tuple[int, ...]:
    """Hashable, canonical key of a plane index (numpy ints become Python ints)."""
    return tuple(int(i) for i in index)


def plane_axes(
    ndim: int, spatial_axes: tuple[int, int] = (-2, -1), channel_axis: int | None = None
) -> tuple[int, ...]:
    """Axes of an ``ndim`` array that index planes (neither spatial nor channel)."""
    named = [_normalise_axis(a, ndim) for a in spatial_axes]
    if channel_axis is not None:
        named.append(_normalise_axis(channel_axis, ndim))
    if len(set(named)) != len(named):
        raise ImageError(
            f"spatial_axes {spatial_axes} and channel_axis {channel_axis} must be distinct."
        )
    return tuple(axis for axis in range(ndim) if axis not in named)


def _normalise_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ImageError(f"Axis {axis} does not exist in an array with {ndim} dimensions.")
    return axis % ndim


def plane_indices(
    shape: Sequence[int], spatial_axes: tuple[int, int] = (-2, -1), channel_axis: int | None = None
) -> Iterator[tuple[int, ...]]:
    """Every plane index of an array of ``shape``, in C order (one ``()`` for a plane)."""
    axes = plane_axes(len(shape), spatial_axes, channel_axis)
    return itertools.product(*(range(shape[axis]) for axis in axes))


def get_plane(
    array,
    index: Sequence[int],
    spatial_axes: tuple[int, int] = (-2, -1),
    channel_axis: int | None = None,
) -> np.ndarray:
    """One plane of an nD stack as an in-memory numpy array.

    Parameters
    ----------
    array : array-like (numpy, dask, zarr ...), nD
    index : sequence of int
        Position along the plane axes, in axis order (``()`` for a 2D image).
    spatial_axes : (int, int)
        The (row, col) axes of the plane.
    channel_axis : int, optional
        Axis holding channels, moved last in the result.

    Returns
    -------
    numpy.ndarray, (H, W) or (H, W, C)

    Raises
    ------
    ImageError
        If ``index`` does not match the plane axes or lies outside the stack.
    """
    shape = tuple(array.shape)
    axes = plane_axes(len(shape), spatial_axes, channel_axis)
    index = plane_key(index)
    if len(index) != len(axes) or any(not 0 <= i < shape[a] for i, a in zip(index, axes)):
        raise ImageError(
            f"Plane index {index} does not fit a stack of shape {shape} whose plane axes "
            f"are {axes}: give one index in range per plane axis."
        )
    selector: list[int | slice] = [slice(None)] * len(shape)
    for axis, position in zip(axes, index):
        selector[axis] = position
    plane = np.asarray(array[tuple(selector)])
    kept = [axis for axis in range(len(shape)) if axis not in axes]
    order = [kept.index(_normalise_axis(a, len(shape))) for a in spatial_axes]
    if channel_axis is not None:
        order.append(kept.index(_normalise_axis(channel_axis, len(shape))))
    return np.transpose(plane, order)
