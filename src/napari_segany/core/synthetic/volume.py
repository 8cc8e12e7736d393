"""Generated 3D nuclei stacks (Z, Y, X) with exact instance labels.

Nuclei are ellipsoids with a random outline wobble, orientation in the plane, size and
brightness, packed so that some touch (a voxel claimed by two goes to the nucleus
whose surface is farther away, so touching nuclei meet at a plane). The stack is
sampled anisotropically: one slice is ``z_step`` in-plane pixels thick, so a nucleus
of radius 8 px spans about ``16 / z_step`` slices. Light: textured DNA stain, a 3D
point-spread function longer in z than across, background and camera noise as in the
2D generator (:mod:`.render`).

>>> scene = generate_volume(np.random.default_rng(0), (12, 64, 64))
>>> scene.image.shape == scene.labels.shape == (12, 64, 64)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import render

__all__ = ["VolumeScene", "generate_volume"]


@dataclass(frozen=True)
class VolumeScene:
    """One generated stack and its truth.

    Attributes
    ----------
    image : (Z, H, W) array
        uint8, uint16 or float32 intensities.
    labels : (Z, H, W) uint16
        One id per nucleus, 0 = background.
    radius : float
        Mean nucleus radius, in-plane pixels.
    z_step : float
        Slice thickness in in-plane pixels (the anisotropy).
    """

    image: np.ndarray
    labels: np.ndarray
    radius: float
    z_step: float


def _place(rng: np.random.Generator, shape: tuple[int, int, int], radius: float, z_step: float):
    """Nucleus centres (z, y, x in voxels) and semi-axes (in-plane pixels), packed until
    about 35 % of the volume is taken or no room is found; neighbours may touch. Placed
    nuclei are kept in a grid of cells (a nearness check looks at the 27 around)."""
    depth, height, width = shape
    scale = np.array([z_step, 1.0, 1.0])  # voxels -> in-plane pixels
    count = max(1, int(0.35 * depth * z_step * height * width / (4.19 * radius**3)))
    cell = 2 * 1.25 * radius * 1.1  # no two nuclei nearer than this can be 2 cells apart
    grid: dict[tuple, list[int]] = {}
    centres, axes = [], []
    for _ in range(30 * count):
        if len(centres) == count:
            break
        semi = radius * rng.uniform(0.75, 1.25, 3) * np.array([rng.uniform(0.8, 1.1), 1, 1])
        centre = rng.uniform([0, 0, 0], [depth, height, width])
        key = tuple((centre * scale // cell).astype(int))
        near = [
            index
            for offset in np.ndindex(3, 3, 3)
            for index in grid.get(tuple(k + o - 1 for k, o in zip(key, offset)), ())
        ]
        if any(
            np.linalg.norm((centre - centres[i]) * scale / (semi + axes[i])) < 0.42 for i in near
        ):
            continue
        grid.setdefault(key, []).append(len(centres))
        centres.append(centre)
        axes.append(semi)
    return centres, axes


def _labels(rng, shape, centres, axes, z_step) -> tuple[np.ndarray, np.ndarray]:
    """(labels, depth inside the own nucleus in [0, 1]) of the packed ellipsoids, each
    computed in its own bounding box."""
    best = np.full(shape, 1.0)  # normalised radius of the claiming nucleus' surface
    labels = np.zeros(shape, np.uint16)
    for index, (centre, semi) in enumerate(zip(centres, axes), start=1):
        reach = 1.15 * semi.max() * np.array([1 / z_step, 1, 1])
        low = np.maximum(np.floor(centre - reach), 0).astype(int)
        high = np.minimum(np.ceil(centre + reach) + 1, shape).astype(int)
        if np.any(high <= low):
            continue
        zz, yy, xx = np.meshgrid(
            *(np.arange(lo, hi, dtype=np.float64) for lo, hi in zip(low, high)), indexing="ij"
        )
        angle = rng.uniform(0, np.pi)
        dz = (zz - centre[0]) * z_step
        dy, dx = yy - centre[1], xx - centre[2]
        along = dy * np.cos(angle) + dx * np.sin(angle)
        across = -dy * np.sin(angle) + dx * np.cos(angle)
        phase, wobble = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.08)
        bend = 1 + wobble * np.sin(3 * np.arctan2(across, along) + phase)
        rho = np.sqrt((dz / semi[0]) ** 2 + (along / semi[1]) ** 2 + (across / semi[2]) ** 2)
        rho /= bend
        window = tuple(slice(lo, hi) for lo, hi in zip(low, high))
        claim = rho < best[window]
        labels[window][claim] = index
        best[window][claim] = rho[claim]
    return labels, np.clip(1 - best, 0, 1)


def generate_volume(
    rng: np.random.Generator,
    shape_zyx: tuple[int, int, int] = (24, 128, 128),
    radius: float | None = None,
    z_step: float | None = None,
    dtype: str | None = None,
) -> VolumeScene:
    """Draw one stack; every argument left as None is drawn at random.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape_zyx : (Z, H, W)
    radius : float, optional
        Mean nucleus radius in in-plane pixels (default 6 to 14).
    z_step : float, optional
        Slice thickness in in-plane pixels (default 1.5 to 4).
    dtype : {"uint8", "uint16", "float32"}, optional

    Returns
    -------
    VolumeScene
    """
    radius = float(radius if radius is not None else rng.uniform(6, 14))
    z_step = float(z_step if z_step is not None else rng.uniform(1.5, 4.0))
    dtype = dtype or str(rng.choice(["uint8", "uint16", "float32"], p=[0.3, 0.6, 0.1]))
    shape = tuple(int(n) for n in shape_zyx)
    centres, axes = _place(rng, shape, radius, z_step)
    labels, depth = _labels(rng, shape, centres, axes, z_step)
    brightness = np.concatenate([[0.0], rng.uniform(0.45, 1.0, len(centres))])
    texture = 1 + 0.25 * ndimage.gaussian_filter(rng.normal(size=shape), (0.5, 1.2, 1.2))
    signal = brightness[labels] * (0.7 + 0.3 * np.sqrt(depth)) * texture
    contrast = float(np.exp(rng.uniform(np.log(2.0), np.log(15.0))))
    light = signal * contrast + np.stack([render.background(rng, shape[1:])] * shape[0])
    sigma_xy = rng.uniform(0.5, 0.1 * radius + 0.9)
    light = ndimage.gaussian_filter(
        light, (rng.uniform(0.8, 1.6) * sigma_xy / z_step * 2, sigma_xy, sigma_xy)
    )
    image = render.camera(rng, light / (contrast + 1.0), dtype)
    return VolumeScene(image, labels, radius, z_step)
