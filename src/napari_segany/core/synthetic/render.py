"""From instance masks to a fluorescence-like image: stains, optics, camera.

Each stage takes and returns float64 "expected photon" planes; only :func:`camera`
draws the noise and converts to the stored dtype (8-bit, 16-bit or float).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_noise(rng: np.random.Generator, shape_hw: tuple[int, int], sigma: float) -> np.ndarray:
    """(H, W) Gaussian noise smoothed by ``sigma`` pixels, rescaled to unit std."""
    field = ndimage.gaussian_filter(rng.normal(size=shape_hw), max(sigma, 0.5))
    return field / (field.std() + 1e-12)


def nuclear_stain(
    rng: np.random.Generator, labels: np.ndarray, radius: float, dividing: frozenset
) -> np.ndarray:
    """DNA-stain-like signal of each labelled nucleus, in [0, ~3].

    Brightness varies between nuclei (log-normal), chromatin texture within them,
    some have dark nucleoli or a bright rim; dividing daughters are bright and dense.
    """
    count = int(labels.max())
    brightness = np.exp(rng.normal(0, rng.uniform(0.1, 0.5), count + 1))
    for label in dividing:
        brightness[label] *= rng.uniform(1.5, 2.5)
    brightness[0] = 0.0
    signal = brightness[labels]
    texture = rng.uniform(0.0, 0.35)
    signal *= 1.0 + texture * smooth_noise(rng, labels.shape, rng.uniform(0.7, 2.0))
    if rng.random() < 0.4:  # nucleoli: dark spots inside
        spots = smooth_noise(rng, labels.shape, max(radius / 4, 1.0)) > 1.6
        signal[spots & (labels > 0)] *= rng.uniform(0.4, 0.8)
    if rng.random() < 0.3:  # brighter nuclear envelope
        inner = ndimage.binary_erosion(labels > 0, iterations=max(1, int(radius / 6)))
        signal[(labels > 0) & ~inner] *= rng.uniform(1.1, 1.5)
    if rng.random() < 0.5:  # borders between touching nuclei a little darker
        edges = _label_edges(labels)
        signal[edges] *= rng.uniform(0.5, 0.9)
    return np.clip(signal, 0, None)


def cell_stain(
    rng: np.random.Generator, cells: np.ndarray, nuclei: np.ndarray, radius: float
) -> np.ndarray:
    """Cytoplasm or membrane stain of cell bodies ``cells``, in [0, ~2]."""
    count = int(cells.max())
    brightness = np.exp(rng.normal(0, 0.3, count + 1))
    brightness[0] = 0.0
    edges = _label_edges(cells) | (ndimage.binary_dilation(cells > 0) & (cells == 0))
    if rng.random() < 0.5:  # membrane
        width = max(1, int(round(radius / 8)))
        rim = ndimage.binary_dilation(edges, iterations=width - 1) if width > 1 else edges
        signal = np.where(rim, brightness[ndimage.maximum_filter(cells, 3)], 0.0)
        signal += 0.15 * brightness[cells]
    else:  # cytoplasm, dimmer over the nucleus
        signal = brightness[cells]
        signal *= 1.0 + 0.3 * smooth_noise(rng, cells.shape, rng.uniform(1.0, 3.0))
        signal[nuclei > 0] *= rng.uniform(0.3, 0.9)
        signal[edges] *= 0.6
    return np.clip(signal, 0, None)


def _label_edges(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: labelled pixels with a 4-neighbour of another non-zero label."""
    edges = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        a = np.swapaxes(labels, 0, axis)
        differ = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        e = np.swapaxes(edges, 0, axis)
        e[1:] |= differ
        e[:-1] |= differ
    return edges


def out_of_focus(rng: np.random.Generator, shape_hw: tuple[int, int], radius: float) -> np.ndarray:
    """Faint, very blurred unlabelled blobs (nuclei in other focal planes), >= 0."""
    field = np.zeros(shape_hw)
    count = rng.poisson(shape_hw[0] * shape_hw[1] / (np.pi * (3 * radius) ** 2))
    ys = rng.integers(0, shape_hw[0], count)
    xs = rng.integers(0, shape_hw[1], count)
    field[ys, xs] = rng.uniform(0.5, 1.0, count) * (2 * radius) ** 2
    return ndimage.gaussian_filter(field, 1.5 * radius)


def background(rng: np.random.Generator, shape_hw: tuple[int, int]) -> np.ndarray:
    """Uneven illumination: offset + linear gradient + broad smooth variation, >= 0."""
    height, width = shape_hw
    yy = np.linspace(-1, 1, height)[:, None]
    xx = np.linspace(-1, 1, width)[None, :]
    gy, gx = rng.uniform(-0.5, 0.5, 2)
    plane = 1.0 + gy * yy + gx * xx
    plane += rng.uniform(0, 0.4) * smooth_noise(rng, shape_hw, max(shape_hw) / 6)
    return np.clip(plane, 0.05, None)


def optics(rng: np.random.Generator, plane: np.ndarray, sigma: float) -> np.ndarray:
    """Blur by a Gaussian point-spread function of ``sigma`` pixels."""
    return ndimage.gaussian_filter(plane, sigma) if sigma > 0.2 else plane


def camera(rng: np.random.Generator, expected: np.ndarray, dtype: str) -> np.ndarray:
    """Poisson shot noise + Gaussian read noise, then the stored value range.

    Parameters
    ----------
    expected : (H, W) float
        Relative intensity (object peak ~1).
    dtype : {"uint8", "uint16", "float32"}

    Returns
    -------
    (H, W) array of ``dtype``: uint8 up to 255, uint16 with a camera offset (a 12-bit
    or a 16-bit range), float32 around [0, 1].
    """
    photons = rng.uniform(15, 1500)  # photons at relative intensity 1
    counts = rng.poisson(np.clip(expected, 0, None) * photons).astype(np.float64)
    counts += rng.normal(0, rng.uniform(0.5, 6.0), expected.shape)
    scaled = counts / photons
    if dtype == "uint8":
        peak = rng.uniform(60, 250) / max(np.percentile(scaled, 99.5), 1e-6)
        return np.clip(np.round(scaled * peak), 0, 255).astype(np.uint8)
    if dtype == "uint16":
        top = 4095 if rng.random() < 0.5 else 65535
        offset = rng.uniform(0, 0.1) * top
        peak = rng.uniform(0.1, 0.8) * (top - offset) / max(np.percentile(scaled, 99.5), 1e-6)
        return np.clip(np.round(offset + scaled * peak), 0, top).astype(np.uint16)
    return (scaled / max(np.percentile(scaled, 99.5), 1e-6)).astype(np.float32)
