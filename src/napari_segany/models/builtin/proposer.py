"""Everything mode of the built-in model: the foreground head's objects as candidates.

``mode="ais"`` (formerly ``"foreground"``, still accepted): the model's automatic
instance segmentation from its own decoder head -- as micro-sam's ``"ais"`` is from
its instance decoder --, one candidate per object of :func:`.objects.find_objects`,
never overlapping, in the whole-plane crop, so phase 2 (selection, stacks, the widget)
serves them as it serves SAM's grid (``core.everything``): ``predicted_iou`` is the
object's mean foreground probability, ``stability_score`` the share of its pixels
whose foreground logit exceeds ``stability_score_offset``, ``points_xy`` its seed.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from scipy import ndimage

from napari_segany.core.errors import InputError
from napari_segany.core.everything.candidates import GridCandidates, labels_as_candidates
from napari_segany.core.plugins import PlaneContext
from napari_segany.core.progress import Progress

from . import objects


@dataclass(frozen=True)
class ForegroundParams:
    """Parameters of the head's proposals (changing one re-runs the model).

    Attributes
    ----------
    stability_score_offset : float
        A pixel is confident where its foreground logit exceeds this.
    head_zoom : int
        0 chooses per plane whether to find the objects on enlarged tiles, where they
        are small (:func:`.objects.find_objects`); 1 to 4 fixes the tiles per side.
    head_views : int
        2 averages the head over the plane and the plane turned by 180 degrees, 1 runs
        it on the plane alone (half the head's time, :data:`.objects.HEAD_VIEWS`).
    """

    stability_score_offset: float = 1.0
    head_zoom: int = objects.AUTO_ZOOM
    head_views: int = objects.HEAD_VIEWS

    def __post_init__(self) -> None:
        objects.check_zoom(self.head_zoom)
        objects.check_views(self.head_views)
        if not np.isfinite(float(self.stability_score_offset)):
            raise InputError("stability_score_offset must be a finite number (default 1.0).")


class ForegroundProposer:
    """The foreground head's objects (``core.plugins.Proposer``): the built-in model's
    ``"ais"``."""

    name = "ais"
    aliases = ("foreground",)
    description = "the built-in model's foreground and border heads, seeded watershed"
    params_type = ForegroundParams
    # the objects never overlap (no NMS); predicted_iou is their mean probability
    filters = MappingProxyType(
        {"pred_iou_thresh": "min foreground prob", "min_mask_region_area": "min region area"}
    )

    def propose(
        self, plane: PlaneContext, params: ForegroundParams
    ) -> Generator[Progress, None, GridCandidates]:
        """The plane's objects as :class:`GridCandidates` (views embedded once per plane)."""
        yield Progress(1, 2, "foreground head")
        found = objects.find_objects(
            plane.predictor.model,
            plane.embedding,
            plane.rgb,
            plane.views.embed,
            params.head_zoom,
            params.head_views,
        )
        result = _candidates(found, params)
        yield Progress(2, 2, "decoded")
        return result


def _candidates(found: objects.PlaneObjects, params: ForegroundParams) -> GridCandidates:
    labels, count = found.labels, len(found.seeds_yx)
    mean_probability, confident = object_scores(
        found.foreground_logits, labels, count, float(params.stability_score_offset)
    )
    points_xy = found.seeds_yx[:, ::-1].copy()
    return labels_as_candidates(labels, params, mean_probability, confident, points_xy)


def object_scores(
    foreground_logits: np.ndarray, labels: np.ndarray, count: int, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per object: mean foreground probability, and the share of its pixels whose
    foreground logit exceeds ``offset`` ((count,) float32 each)."""
    index = np.arange(1, count + 1)
    probability = 1.0 / (1.0 + np.exp(-foreground_logits.astype(np.float64)))
    mean = ndimage.mean(probability, labels, index)
    confident = ndimage.mean(foreground_logits > offset, labels, index)
    return np.asarray(mean, np.float32).reshape(-1), np.asarray(confident, np.float32).reshape(-1)
