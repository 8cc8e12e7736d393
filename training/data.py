"""Training windows drawn ahead of training, so that the cores train rather than draw.

A window is a generated scene converted exactly as the predictor converts a user's
plane (``core.image.to_model_rgb``), already in model-frame pixels: the built-in model
sees images resized so their long side is 512, and the generator's object radii
(3-40 px) cover what nuclei become after that resize (e.g. 2.5-5 px for 10-20 px
nuclei on a 2048 px image, 20-60 px on a 256 px one).
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_segany.core.image import to_model_rgb
from napari_segany.core.synthetic import generate_scene

logger = logging.getLogger(__name__)


@dataclass
class WindowSet:
    """Generated training windows.

    Attributes
    ----------
    rgb : (N, S, S, 3) uint8
        Model-ready pixels (before SAM's mean/std normalisation).
    labels : (N, S, S) uint16
        Instance masks.
    """

    rgb: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _draw(args: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, size = args
    rng = np.random.default_rng(seed)
    scene = generate_scene(rng, (size, size))
    return to_model_rgb(scene.image), scene.labels


def draw_windows(
    count: int, size: int, seed: int, workers: int = 2, first_index: int = 0
) -> WindowSet:
    """Draw ``count`` windows of ``size`` px; window i uses seed ``(seed, i)``.

    Parameters
    ----------
    count, size : int
    seed : int
        Base seed; each window's generator is seeded from ``seed * 1_000_003 + i`` so
        that any subset can be redrawn.
    workers : int
        Processes to draw with.
    first_index : int
        ``i`` of the first window, so that two sets drawn with one seed differ.
    """
    first = seed * 1_000_003 + first_index
    jobs = [(first + index, size) for index in range(count)]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            drawn = pool.map(_draw, jobs, chunksize=16)
    else:
        drawn = [_draw(job) for job in jobs]
    rgb = np.stack([pair[0] for pair in drawn])
    labels = np.stack([pair[1] for pair in drawn])
    return WindowSet(rgb, labels)


def load_or_draw(
    path: Path, count: int, size: int, seed: int, workers: int, first_index: int = 0
) -> WindowSet:
    """Windows cached in ``path`` (an .npz) when it matches, else drawn and saved."""
    wanted = (count, size, seed, first_index)
    if path.exists():
        with np.load(path) as saved:
            meta = tuple(int(v) for v in saved["meta"])
            if meta + (0,) * (4 - len(meta)) == wanted:
                logger.info("Using cached windows %s", path)
                return WindowSet(saved["rgb"], saved["labels"])
    windows = draw_windows(count, size, seed, workers, first_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, rgb=windows.rgb, labels=windows.labels, meta=np.array(wanted))
    return windows
