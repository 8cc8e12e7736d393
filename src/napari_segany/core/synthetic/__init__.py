"""Generated microscopy-like images with exact instance masks.

Used to train and evaluate the built-in model (``training/``), by the sample data and
by tests. Everything is drawn from a ``numpy.random.Generator``, so a seed gives the
same scene on every machine.

>>> scene = generate_scene(np.random.default_rng(0), (256, 256))
>>> scene.image.shape[:2] == scene.labels.shape == (256, 256)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..depth import inner_depth
from . import render
from .layout import Layout, draw_layout, grow_cells

__all__ = ["Scene", "SceneKind", "generate_scene", "interior_point_yx", "SCENE_KINDS"]

SCENE_KINDS = ("nuclei", "cells", "cells_rgb")
SceneKind = str


@dataclass(frozen=True)
class Scene:
    """One generated image and its truth.

    Attributes
    ----------
    image : (H, W) or (H, W, 3) array
        uint8, uint16 or float32 intensities (RGB for ``kind == "cells_rgb"``).
    labels : (H, W) uint16
        Instance masks of the objects to segment (nuclei, or whole cells for the
        cell kinds); 0 is background.
    kind : str
        ``"nuclei"`` (DNA stain), ``"cells"`` (cytoplasm or membrane stain, one
        channel) or ``"cells_rgb"`` (cell stain in green, nuclei in blue).
    radius : float
        Mean nucleus radius used, pixels.
    """

    image: np.ndarray
    labels: np.ndarray
    kind: SceneKind
    radius: float


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _finish(rng: np.random.Generator, signal: np.ndarray, layout: Layout, dtype: str):
    """Add background and out-of-focus light, blur and camera noise to ``signal``."""
    shape = signal.shape
    contrast = _log_uniform(rng, 1.5, 20.0)  # object peak over background
    lit = signal[signal > 0]
    reference = float(np.percentile(lit, 90)) if lit.size else 1.0
    light = signal * contrast / max(reference, 1e-6)
    light = light + render.background(rng, shape)
    if rng.random() < 0.4:
        light += rng.uniform(0.2, 1.0) * contrast * render.out_of_focus(rng, shape, layout.radius)
    light = render.optics(rng, light, rng.uniform(0.3, 0.15 * layout.radius + 0.8))
    return render.camera(rng, light / (contrast + 1.0), dtype)


def generate_scene(
    rng: np.random.Generator,
    shape_hw: tuple[int, int] = (256, 256),
    kind: SceneKind | None = None,
    radius: float | None = None,
    coverage: float | None = None,
    dtype: str | None = None,
) -> Scene:
    """Draw one scene; every argument left as None is drawn at random.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape_hw : (H, W)
        Image size in pixels.
    kind : {"nuclei", "cells", "cells_rgb"}, optional
        Drawn with probabilities 0.7 / 0.15 / 0.15.
    radius : float, optional
        Mean nucleus radius in pixels; default log-uniform in [3, 40].
    coverage : float, optional
        Fraction of the image covered by nuclei; default uniform in [0.05, 0.45]
        (cells cover about twice as much).
    dtype : {"uint8", "uint16", "float32"}, optional
        Stored type; default uint8 / uint16 / float32 with probabilities .4/.5/.1.
    """
    if kind is None:
        kind = str(rng.choice(SCENE_KINDS, p=[0.7, 0.15, 0.15]))
    if kind not in SCENE_KINDS:
        raise ValueError(f"kind must be one of {SCENE_KINDS}, got {kind!r}")
    radius = _log_uniform(rng, 3.0, 40.0) if radius is None else float(radius)
    if coverage is None:
        coverage = rng.uniform(0.05, 0.45) if kind == "nuclei" else rng.uniform(0.05, 0.25)
    if dtype is None:
        dtype = str(rng.choice(["uint8", "uint16", "float32"], p=[0.4, 0.5, 0.1]))
    layout = draw_layout(rng, tuple(shape_hw), radius, coverage)
    nuclei_signal = render.nuclear_stain(rng, layout.labels, radius, layout.dividing)
    if kind == "nuclei":
        image = _finish(rng, nuclei_signal, layout, dtype)
        return Scene(image, layout.labels, kind, radius)
    cells = grow_cells(rng, layout.labels, radius)
    cell_signal = render.cell_stain(rng, cells, layout.labels, radius)
    if kind == "cells":
        return Scene(_finish(rng, cell_signal, layout, dtype), cells, kind, radius)
    green = _finish(rng, cell_signal, layout, "uint8")
    blue = _finish(rng, nuclei_signal, layout, "uint8")
    red = np.zeros_like(green)
    return Scene(np.stack([red, green, blue], axis=-1), cells, kind, radius)


def interior_point_yx(mask: np.ndarray, edge_is_background: bool = True) -> tuple[int, int]:
    """The pixel of a (H, W) bool ``mask`` farthest from the background (first on ties).

    With ``edge_is_background`` the image border counts as background, so an object cut
    by the border is clicked away from the cut.
    """
    depth = inner_depth(mask) if edge_is_background else ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(y), int(x)
