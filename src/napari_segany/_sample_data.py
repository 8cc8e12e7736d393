"""Sample images that need no network: generated fluorescent nuclei.

The images are drawn from a fixed seed, so every user sees the same sample.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _nuclei_plane(rng: np.random.Generator, shape_yx: tuple[int, int], n_nuclei: int) -> np.ndarray:
    """One plane of blurred elliptical nuclei with texture, background and noise.

    Returns
    -------
    numpy.ndarray
        (H, W) float64 photon counts before the camera offset.
    """
    height, width = shape_yx
    yy, xx = np.mgrid[0:height, 0:width]
    plane = np.zeros(shape_yx)
    for _ in range(n_nuclei):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(8, 18, size=2)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dy * np.cos(angle) + dx * np.sin(angle)) / ry
        v = (-dy * np.sin(angle) + dx * np.cos(angle)) / rx
        inside = u**2 + v**2 <= 1.0
        plane[inside] = rng.uniform(300, 1200)
    texture = ndimage.gaussian_filter(rng.normal(1.0, 0.25, shape_yx), 1.5)
    plane = ndimage.gaussian_filter(plane * texture, 1.2)
    background = 100 + 60 * np.sin(xx / width * np.pi) * np.cos(yy / height * np.pi / 2)
    return rng.poisson(np.clip(plane + background, 0, None)).astype(np.float64)


def make_nuclei_2d(seed: int = 0) -> np.ndarray:
    """(256, 256) uint16 image of about 40 fluorescent nuclei."""
    rng = np.random.default_rng(seed)
    return _nuclei_plane(rng, (256, 256), 40).astype(np.uint16)


def make_nuclei_3d(seed: int = 1) -> np.ndarray:
    """(8, 192, 192) uint16 ZYX stack; each plane is a new draw (a time lapse look)."""
    rng = np.random.default_rng(seed)
    return np.stack([_nuclei_plane(rng, (192, 192), 25) for _ in range(8)]).astype(np.uint16)


def nuclei_2d() -> list[tuple]:
    """napari sample-data hook: generated 2D nuclei."""
    return [(make_nuclei_2d(), {"name": "nuclei (generated)"}, "image")]


def nuclei_3d() -> list[tuple]:
    """napari sample-data hook: generated ZYX nuclei stack."""
    return [(make_nuclei_3d(), {"name": "nuclei stack (generated)"}, "image")]
