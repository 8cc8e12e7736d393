"""The pixels the widget works on: the level of a napari multiscale layer, the scale
of the Labels layers made for it, and planes of lazy layers handed on unread (no Qt
here)."""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_LEVEL_PIXELS = 1 << 28
"""The largest plane (pixels) of a multiscale layer the widget works on (16384^2: its
labels take 1 GiB as uint32); finer levels are skipped (:func:`working_level`)."""


LAZY_PLANE_PIXELS = 2048 * 2048
"""Planes of lazy arrays (dask, zarr) above this size are handed on unread: the session
tiles them and reads only the windows a prompt needs."""


def working_level(image: Any) -> tuple[Any, tuple[float, float]]:
    """The array the widget works on for ``image``, and its (y, x) downsampling.

    A plain layer: its data, (1, 1). A multiscale layer: its finest level whose planes
    hold at most :data:`MAX_LEVEL_PIXELS` (level 0 for all but whole-slide sizes);
    prompts, previews and labels use that level's pixels, ``factor`` times coarser
    than the layer's data coordinates (level 0).
    """
    if not getattr(image, "multiscale", False):
        return image.data, (1.0, 1.0)
    levels = image.data
    rgb = 1 if getattr(image, "rgb", False) else 0
    finest = tuple(int(s) for s in levels[0].shape)
    for level in range(len(levels)):
        shape = tuple(int(s) for s in levels[level].shape)
        hw = shape[len(shape) - 2 - rgb : len(shape) - rgb]
        if hw[0] * hw[1] <= MAX_LEVEL_PIXELS or level == len(levels) - 1:
            base = finest[len(shape) - 2 - rgb : len(shape) - rgb]
            return levels[level], (base[0] / hw[0], base[1] / hw[1])
    raise AssertionError("unreachable")  # pragma: no cover


def labels_transform(image: Any) -> dict[str, Any]:
    """``scale`` and ``translate`` of a Labels layer on ``image``'s working level
    (:func:`working_level`): the image's, its last two scales times the level's factor."""
    _, factor = working_level(image)
    scale = np.array(image.scale, dtype=float)
    scale[-2:] *= factor
    return {"scale": scale, "translate": np.array(image.translate, dtype=float)}


def get_plane(layer: Any, index: tuple[int, ...]) -> Any:
    """(H, W) or (H, W, C) plane of ``layer``'s working level at ``index``.

    numpy data gives a numpy view; a lazy array (dask, zarr) is read when the plane
    is small, and handed on unread above :data:`LAZY_PLANE_PIXELS` (the session reads
    the windows it needs).
    """
    data = working_level(layer)[0]
    plane = data[index] if index else data
    if isinstance(plane, np.ndarray):
        return plane
    height, width = (int(s) for s in plane.shape[:2])
    return plane if height * width > LAZY_PLANE_PIXELS else np.asarray(plane)
