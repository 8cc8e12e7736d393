"""Where the objects of a synthetic scene lie: exact instance masks, no pixels yet.

A layout is drawn in three steps: a scale (mean nucleus radius) and a density, centres
(uniform or clustered), then one star-convex outline per object (an ellipse whose
radius is perturbed by a few low harmonics). Objects are painted in turn and only onto
free pixels, so touching objects share a boundary and overlaps are resolved the way a
2D projection of nuclei looks. Some objects are dividing: a pair of small elongated
daughters side by side (two instances).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import measure
from skimage.segmentation import expand_labels

MAX_OBJECTS = 600


@dataclass(frozen=True)
class Outline:
    """One star-convex object outline.

    Attributes
    ----------
    center_yx : (2,) float
        Centre in pixels.
    radii_yx : (2,) float
        Semi-axes before rotation.
    angle : float
        Rotation in radians.
    harmonics : (k, 3) float
        Rows (order, amplitude, phase) of the radial perturbation.
    """

    center_yx: tuple[float, float]
    radii_yx: tuple[float, float]
    angle: float
    harmonics: np.ndarray

    def rasterize(self, shape_hw: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """The outline as a boolean mask inside its bounding box.

        Returns
        -------
        (slices, mask) or None
            ``mask`` is (h, w) bool for ``image[slices]``; None if it misses the image.
        """
        reach = max(self.radii_yx) * (1.0 + np.abs(self.harmonics[:, 1]).sum()) + 1.0
        cy, cx = self.center_yx
        y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, shape_hw[0])
        x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, shape_hw[1])
        if y0 >= y1 or x0 >= x1:
            return None
        dy = np.arange(y0, y1)[:, None] + 0.5 - cy
        dx = np.arange(x0, x1)[None, :] + 0.5 - cx
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        u = (dy * cos + dx * sin) / self.radii_yx[0]
        v = (-dy * sin + dx * cos) / self.radii_yx[1]
        rho, theta = np.hypot(u, v), np.arctan2(v, u)
        limit = np.ones_like(theta)
        for order, amplitude, phase in self.harmonics:
            limit += amplitude * np.cos(order * theta + phase)
        mask = rho <= limit
        if not mask.any():
            return None
        return (slice(y0, y1), slice(x0, x1)), mask


def _harmonics(rng: np.random.Generator, irregularity: float) -> np.ndarray:
    orders = np.arange(2, 6, dtype=float)
    amplitudes = irregularity * rng.uniform(0, 1, orders.size) / orders
    phases = rng.uniform(0, 2 * np.pi, orders.size)
    return np.stack([orders, amplitudes, phases], axis=1)


def random_outline(
    rng: np.random.Generator, center_yx, radius: float, elongation: float, irregularity: float
) -> Outline:
    """An outline of mean radius ``radius`` and axis ratio up to ``1 + elongation``."""
    ratio = 1.0 + rng.uniform(0, elongation)
    radii = (radius * np.sqrt(ratio), radius / np.sqrt(ratio))
    return Outline(tuple(center_yx), radii, rng.uniform(0, np.pi), _harmonics(rng, irregularity))


def _daughters(rng: np.random.Generator, outline: Outline) -> list[Outline]:
    """Two elongated daughters replacing ``outline``, along a random axis."""
    radius = float(np.sqrt(np.prod(outline.radii_yx))) * rng.uniform(0.55, 0.75)
    axis = rng.uniform(0, np.pi)
    offset = radius * rng.uniform(1.1, 1.8) * np.array([np.cos(axis), np.sin(axis)])
    center = np.asarray(outline.center_yx)
    pieces = []
    for sign in (-1.0, 1.0):
        ratio = rng.uniform(1.5, 2.5)
        radii = (radius / np.sqrt(ratio), radius * np.sqrt(ratio))  # long side across
        pieces.append(Outline(tuple(center + sign * offset), radii, axis, _harmonics(rng, 0.1)))
    return pieces


def _centers(
    rng: np.random.Generator, shape_hw: tuple[int, int], count: int, radius: float
) -> np.ndarray:
    """(count, 2) centres, uniform or clustered around a few seeds (Thomas process)."""
    height, width = shape_hw
    margin = radius
    low, high = np.array([-margin, -margin]), np.array([height + margin, width + margin])
    if rng.random() < 0.5:
        return rng.uniform(low, high, size=(count, 2))
    n_clusters = max(1, int(count / rng.uniform(3, 12)))
    seeds = rng.uniform(low, high, size=(n_clusters, 2))
    spread = radius * rng.uniform(1.5, 4.0)
    picks = seeds[rng.integers(0, n_clusters, count)]
    return picks + rng.normal(0, spread, size=(count, 2))


@dataclass(frozen=True)
class Layout:
    """Instance masks of a scene.

    Attributes
    ----------
    labels : (H, W) uint16
        0 background, 1..n objects (each connected to its own outline).
    radius : float
        Mean object radius used to draw it, pixels.
    dividing : frozenset of int
        Labels of dividing daughters (rendered brighter and denser).
    """

    labels: np.ndarray
    radius: float
    dividing: frozenset


def draw_layout(
    rng: np.random.Generator,
    shape_hw: tuple[int, int],
    radius: float,
    coverage: float,
    max_overlap: float = 0.35,
) -> Layout:
    """Draw nuclei of mean radius ``radius`` covering about ``coverage`` of the image.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape_hw : (H, W)
    radius : float
        Mean object radius in pixels.
    coverage : float
        Target fraction of the image covered by objects, in (0, 1).
    max_overlap : float
        An object whose outline overlaps painted objects by more than this fraction of
        its area is dropped (a little overlap makes touching objects).
    """
    area = shape_hw[0] * shape_hw[1]
    count = int(np.clip(coverage * area / (np.pi * radius**2) * 1.4, 1, MAX_OBJECTS))
    labels = np.zeros(shape_hw, dtype=np.uint16)
    elongation, irregularity = rng.uniform(0.1, 1.0), rng.uniform(0.0, 0.5)
    division_rate = rng.choice([0.0, 0.05, 0.15])
    dividing: set[int] = set()
    next_label = 1
    for center in _centers(rng, shape_hw, count, radius):
        if (labels > 0).mean() >= coverage:
            break
        size = radius * np.exp(rng.normal(0, 0.25))
        outline = random_outline(rng, center, size, elongation, irregularity)
        pieces = _daughters(rng, outline) if rng.random() < division_rate else [outline]
        for piece in pieces:
            drawn = piece.rasterize(shape_hw)
            if drawn is None:
                continue
            window, mask = drawn
            free = mask & (labels[window] == 0)
            if free.sum() < max(4, (1.0 - max_overlap) * mask.sum()):
                continue
            labels[window][free] = next_label
            if len(pieces) == 2:
                dividing.add(next_label)
            next_label += 1
    return Layout(_drop_fragments(labels), float(radius), frozenset(dividing))


def _drop_fragments(labels: np.ndarray) -> np.ndarray:
    """Keep only the largest connected piece of each label (painting onto free pixels
    can split an outline); ids are unchanged."""
    pieces = measure.label(labels, background=0, connectivity=1)  # equal-value regions
    if pieces.max() == 0:
        return labels
    sizes = np.bincount(pieces.ravel())
    owners = np.zeros(sizes.size, np.int64)
    owners[pieces.ravel()] = labels.ravel()
    order = np.lexsort((-sizes[1:], owners[1:])) + 1  # by owner, biggest piece first
    first = np.ones(order.size, bool)
    first[1:] = owners[order][1:] != owners[order][:-1]
    kept = np.zeros(sizes.size, labels.dtype)
    kept[order[first]] = owners[order[first]]
    return kept[pieces]


def grow_cells(rng: np.random.Generator, nuclei: np.ndarray, radius: float) -> np.ndarray:
    """Cell bodies around nuclei: labels expanded by about ``radius`` pixels, with an
    irregular (noisy) border. Returns (H, W) uint16 with the nuclei's ids."""
    distance = radius * rng.uniform(0.6, 1.6)
    cells = expand_labels(nuclei, distance=distance)
    # Roughen the outer border: drop pixels where smooth noise is low, far from nuclei.
    noise = ndimage.gaussian_filter(rng.normal(size=nuclei.shape), max(radius / 3, 1.0))
    noise /= noise.std() + 1e-9
    depth = ndimage.distance_transform_edt(nuclei == 0)
    cells[(depth > 0.5 * distance) & (noise < -0.8)] = 0
    return _drop_fragments(cells)
