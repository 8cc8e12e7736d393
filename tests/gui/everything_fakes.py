"""A fake session with everything mode: objects are the bright blobs of the plane.

``BlobSession`` implements ``app.sessions.EverythingSession``: ``decode_everything``
finds the connected blobs of ``plane > level`` and gives each the score
``mean intensity / plane maximum``; ``select`` keeps the blobs whose score is above
``pred_iou_thresh``. So a test knows exactly which objects a threshold keeps and
where they are, and counts the expensive calls in ``decode_calls``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from tests.fakes import DiscSession

from napari_segany.app.sessions import EverythingSession
from napari_segany.core.everything import EverythingModes
from napari_segany.core.progress import Progress


@dataclass(frozen=True)
class BlobObject:
    label: int
    score: float
    plane: tuple = ()


@dataclass(frozen=True)
class BlobParams:
    """The fake proposer's own parameters (as the grid's)."""

    points_per_side: int = 32


@dataclass(frozen=True)
class BlobResult:
    labels: np.ndarray
    objects: list


class BlobCandidates:
    """Blobs of one plane with their scores; ``select`` thresholds them (no model)."""

    def __init__(self, plane: np.ndarray, level: float = 0) -> None:
        self.blobs, count = ndimage.label(plane > level)
        top = max(float(plane.max()), 1e-9)
        self.scores = [float(plane[self.blobs == k].mean()) / top for k in range(1, count + 1)]
        self.select_calls = 0

    def select(self, filters) -> BlobResult:
        self.select_calls += 1
        labels = np.zeros(self.blobs.shape, np.uint32)
        objects = []
        for number, score in enumerate(self.scores, start=1):
            if score > filters.pred_iou_thresh:
                objects.append(BlobObject(len(objects) + 1, score))
                labels[self.blobs == number] = len(objects)
        return BlobResult(labels, objects)


class BlobProposer:
    """The fake's one mode: what ``EverythingModes`` reads of a proposer (the fake
    decodes in ``BlobSession.decode_everything``)."""

    name = "grid"
    description = "fake: the bright blobs"
    params_type = BlobParams
    filters = {"pred_iou_thresh": "min brightness"}  # its score: mean intensity / max


class BlobSession(DiscSession, EverythingSession):
    """DiscSession (prompts) plus blob everything mode; ``step_seconds`` slows each step.

    ``level``: intensity above which pixels belong to blobs (``"otsu"``: Otsu's threshold
    of each plane).
    """

    def __init__(self, step_seconds: float = 0.0, level: float | str = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step_seconds = step_seconds
        self.level = level
        self.decode_calls: list[float] = []  # plane sums of the decoded planes
        self.steps_done = 0
        self.everything = EverythingModes((BlobProposer(),), "grid")

    def decode_everything(self, plane, contrast_limits=None, channels=None, mode="auto", **params):
        plane = np.asarray(plane)
        grid = BlobParams(**{k: v for k, v in params.items() if k == "points_per_side"})
        for step in range(4):
            yield Progress(step, 4, f"fake grid {grid.points_per_side}")
            time.sleep(self.step_seconds)
            self.steps_done += 1
        self.decode_calls.append(float(plane.sum()))
        level = self.level
        if level == "otsu":
            from skimage.filters import threshold_otsu

            level = threshold_otsu(plane)
        return BlobCandidates(plane, level)


def blob_plane(shape=(48, 64), bright=((12, 14), 230), dim=((32, 44), 128)) -> np.ndarray:
    """uint8 plane with a bright disc (score 1) and a dim one (0.56) of radius 6."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    plane = np.zeros(shape, np.uint8)
    for (cy, cx), value in (bright, dim):
        plane[np.hypot(yy - cy, xx - cx) <= 6] = value
    return plane
