"""Whether everything mode could resolve a plane's objects in one pass.

A model sees a plane shrunk into its input frame (long side ``image_size``) and
describes it by an embedding with one feature vector per *cell* of ``cell_px`` x
``cell_px`` frame pixels (16 for SAM's ViTs, 8 for the built-in CNN). Objects much
smaller than a cell cannot be told apart: two neighbours narrower than half a cell fit
in one cell, so they merge or are missed. On a large plane of small objects (a 4096 x
4096 field of 16-pixel nuclei is shrunk 8x into the built-in model's 512-pixel frame,
where a nucleus is 2 pixels wide) one pass finds few or none of them.

The rule (:func:`small_objects_message`), for a plane shrunk ``s = plane long side /
frame long side > 1`` times:

- objects found: their median equivalent diameter ``d`` (plane pixels, ``2 sqrt(area /
  pi)``) shrinks to ``d / s`` frame pixels; below half a cell (``d / s < cell_px / 2``)
  while at full resolution it would not be (``d >= cell_px / 2``), crops of the plane
  would do better: warn;
- nothing found on a plane shrunk at least :data:`EMPTY_DOWNSCALE` times (and nothing
  decoded at all, so no threshold removed it): warn that small objects may be the reason.

The advice is to see the plane in windows of at most
``max(image_size, image_size * d / cell_px)`` pixels (there the typical object spans a
cell; ``2 image_size`` when nothing was found): ``SegAny(tiling=(tile, halo))``
(``core.tiling``; ``"auto"`` tiles only planes longer than twice the frame).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..embeddings import Embedding
from ..errors import SmallObjectsWarning

EMPTY_DOWNSCALE = 4.0  # nothing found on a plane shrunk this much: small objects may be why
CELL_FRACTION = 0.5  # objects narrower than this share of a cell cannot be told apart


@dataclass(frozen=True)
class Resolution:
    """How one everything-mode pass saw a plane.

    Attributes
    ----------
    plane_hw : (int, int)
        The plane's size in pixels.
    frame_hw : (int, int)
        Its size in the model's input frame (``core.image.model_input_hw``).
    image_size : int
        The model's input side.
    cell_px : float
        Frame pixels per embedding cell (``image_size / embedding width``).
    """

    plane_hw: tuple[int, int]
    frame_hw: tuple[int, int]
    image_size: int
    cell_px: float

    @property
    def downscale(self) -> float:
        """Plane pixels per frame pixel (> 1: the plane was shrunk)."""
        return max(self.plane_hw) / max(max(self.frame_hw), 1)


def plane_resolution(embedding: Embedding, image_size: int) -> Resolution:
    """The :class:`Resolution` of a plane's embedding made by a model of ``image_size``."""
    return Resolution(
        tuple(int(v) for v in embedding.original_hw),
        tuple(int(v) for v in embedding.input_hw),
        int(image_size),
        image_size / int(embedding.features.shape[-1]),
    )


def small_objects_message(
    resolution: Resolution, areas: np.ndarray, n_candidates: int
) -> str | None:
    """The warning for one plane's result, or None when its objects were resolvable.

    Parameters
    ----------
    resolution : Resolution
    areas : numpy.ndarray, (K,) int
        Pixel areas of the objects kept.
    n_candidates : int
        Masks decoded before any threshold.
    """
    scale = resolution.downscale
    height, width = resolution.plane_hw
    limit = CELL_FRACTION * resolution.cell_px
    where = (
        f"this {height} x {width} plane is shrunk {scale:.1f}x into the model's "
        f"{resolution.image_size}-pixel input"
    )
    if len(areas) == 0:
        if n_candidates or scale < EMPTY_DOWNSCALE:
            return None
        return (
            f"Everything mode found no object, and {where}, where objects narrower than "
            f"{limit * scale:.0f} pixels of the plane are too small to be told apart. If "
            f"the plane holds such objects, {_advice(2 * resolution.image_size)}"
        )
    cell = resolution.cell_px
    diameter = float(np.median(2.0 * np.sqrt(np.asarray(areas, np.float64) / math.pi)))
    if scale <= 1.0 or diameter / scale >= limit or diameter < limit:
        return None
    return (
        f"Everything mode: objects too small for one pass at this plane size: {where}, "
        f"where the typical object found ({diameter:.0f} pixels wide) is "
        f"{diameter / scale:.1f} pixels, under half the model's {cell:g}-pixel "
        f"feature cell, so neighbouring objects merge or are missed ({len(areas)} found). "
        + _sentence(
            _advice(max(resolution.image_size, int(resolution.image_size * diameter / cell)))
        )
    )


def _sentence(text: str) -> str:
    """``text`` with its first letter upper case (the rest as it is: ``SegAny``)."""
    return text[:1].upper() + text[1:]


def _advice(side: int) -> str:
    """What to do: windows of at most ``side`` pixels (``SegAny(tiling=...)``)."""
    tile = max(side - side // 4, 16)
    return (
        f"see the plane in crops of at most {side} x {side} pixels: "
        f"SegAny(..., tiling=({tile}, {(side - tile) // 2})) "
        f"(segment-all: --tiling {tile},{(side - tile) // 2})."
    )


def warn_small_objects(resolution: Resolution | None, areas: np.ndarray, n_candidates: int):
    """Issue :class:`SmallObjectsWarning` when :func:`small_objects_message` has one."""
    if resolution is None:
        return
    message = small_objects_message(resolution, areas, n_candidates)
    if message is not None:
        warnings.warn(message, SmallObjectsWarning, stacklevel=4)
