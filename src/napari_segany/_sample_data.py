"""Sample images that need no network: generated fluorescent nuclei.

They come from the same generator as the built-in model's training and evaluation
data (:mod:`napari_segany.core.synthetic`), drawn from fixed seeds that training never
uses, so every user sees the same samples and the true masks are known.
"""

from __future__ import annotations

import numpy as np

from .core.synthetic import Scene, generate_scene

SAMPLE_SEED = 2_024_112_600


def nuclei_scene_2d(seed: int = 0) -> Scene:
    """A (256, 256) uint16 scene of about 40 nuclei, with its true labels."""
    rng = np.random.default_rng(SAMPLE_SEED + seed)
    return generate_scene(rng, (256, 256), kind="nuclei", radius=9, coverage=0.25, dtype="uint16")


def make_nuclei_2d(seed: int = 0) -> np.ndarray:
    """(256, 256) uint16 image of generated fluorescent nuclei."""
    return nuclei_scene_2d(seed).image


def nuclei_scenes_3d(seed: int = 1) -> list[Scene]:
    """The 8 (192, 192) float32 planes of :func:`make_nuclei_3d`, with true labels."""
    rng = np.random.default_rng(SAMPLE_SEED + 1000 + seed)
    return [
        generate_scene(rng, (192, 192), kind="nuclei", radius=8, coverage=0.2, dtype="float32")
        for _ in range(8)
    ]


def make_nuclei_3d(seed: int = 1) -> np.ndarray:
    """(8, 192, 192) uint16 ZYX stack; each plane is a new draw (a time lapse look)."""
    # one camera range for the whole stack, as one acquisition would have
    stack = np.stack([plane.image for plane in nuclei_scenes_3d(seed)]).astype(np.float64)
    return np.clip(200 + 3000 * stack, 0, 65535).astype(np.uint16)


def nuclei_2d() -> list[tuple]:
    """napari sample-data hook: generated 2D nuclei."""
    return [(make_nuclei_2d(), {"name": "nuclei (generated)"}, "image")]


def nuclei_3d() -> list[tuple]:
    """napari sample-data hook: generated ZYX nuclei stack."""
    return [(make_nuclei_3d(), {"name": "nuclei stack (generated)"}, "image")]
