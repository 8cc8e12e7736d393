"""The built-in model's prompt refiner: prompts snap to the foreground head's objects.

:meth:`SnapToObjects.prepare` (once per plane, in the background embedding job) finds
the plane's objects (:func:`.objects.find_objects`: zoomed tiles where objects are
small, two views) and embeds every view a click's guide may need
(:mod:`.click_guide`), so :meth:`SnapToObjects.refine`, which runs on every prompt,
embeds nothing: a click's best-scored mask is replaced by its guide (decoded on the
zoomed tile, from two views) and the click is answered with the head's object, split
from a merged neighbour; a box with the object fitted to it (:mod:`.snapping`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_segany.core.mask_ops import keep_clicked_components
from napari_segany.core.plugins import PlaneContext, Prompt
from napari_segany.core.results import SegmentResult

from . import click_guide, objects, snapping


@dataclass(frozen=True)
class PreparedObjects:
    """What :meth:`SnapToObjects.prepare` keeps for one plane.

    Attributes
    ----------
    labels : numpy.ndarray, (H, W) int32
        The head's objects, 0 background.
    logits : numpy.ndarray, (2, H, W) float16
        The foreground and border logits they were found on.
    zoom : int
        Tiles per side they were found with (1: the whole plane).
    """

    labels: np.ndarray
    logits: np.ndarray
    zoom: int


class SnapToObjects:
    """Answer a single-object prompt with the foreground head's object it designates.

    Parameters
    ----------
    views : int
        The head's views (:data:`.objects.HEAD_VIEWS`): 2 averages the plane and the
        plane turned by 180 degrees, 1 uses the plane alone.
    guide_clicked_parts : bool
        Reduce a click's guide to its parts under the positive clicks (as the
        ``clicked_parts`` refiner does with every mask).
    """

    name = "snap_to_objects"

    def __init__(self, views: int = objects.HEAD_VIEWS, guide_clicked_parts: bool = True):
        objects.check_views(views)
        self.views = int(views)
        self.guide_clicked_parts = bool(guide_clicked_parts)

    def prepare(self, plane: PlaneContext) -> PreparedObjects:
        """Find the plane's objects and embed the views of every click window."""
        found = objects.find_objects(
            plane.predictor.model, plane.embedding, plane.rgb, plane.views.embed, views=self.views
        )
        logits = np.stack([found.foreground_logits, found.border_logits], dtype=np.float16)
        if plane.rgb is not None:  # the views of every click window (most made above)
            whole = (0, plane.hw[0], 0, plane.hw[1])
            for window in click_guide.windows(plane.hw, found.zoom):
                crop, turned = click_guide.window_views(plane.rgb, window)
                if window != whole:  # on the whole plane, the plane's embedding
                    plane.views.embed(crop, found.zoom)
                plane.views.embed(turned, 1 if window == whole else found.zoom)
        return PreparedObjects(found.labels, logits, found.zoom)

    def refine(self, result: SegmentResult, prompt: Prompt, plane: PlaneContext) -> SegmentResult:
        """The snapped masks (:func:`.snapping.snap_to_objects`); scores and logits kept."""
        prepared: PreparedObjects = plane.prepared[self.name]
        masks = result.masks
        if prompt.clicks_only:
            masks = self._guided(masks, result, prompt, plane, prepared.zoom)
        snapped = snapping.snap_to_objects(
            masks,
            result.scores,
            prepared.labels,
            prompt.points_yx,
            prompt.labels,
            prompt.boxes_yxyx,
            border_logits=prepared.logits[1],
            foreground_logits=prepared.logits[0],
        )
        return result.with_masks(snapped)

    def _guided(
        self,
        masks: np.ndarray,
        result: SegmentResult,
        prompt: Prompt,
        plane: PlaneContext,
        zoom: int,
    ) -> np.ndarray:
        """The masks with the best-scored one replaced by the click's guide; unchanged
        where the clicks spread over more than one tile, or where only the plane's
        embedding is known (no pixels to cut views from)."""
        window = click_guide.click_window(plane.hw, zoom, prompt.points_yx)
        if window is None or plane.rgb is None:
            return masks
        crop, turned = click_guide.window_views(plane.rgb, window)
        whole = window == (0, plane.hw[0], 0, plane.hw[1])
        enlarge = 1 if whole else zoom  # as prepare() embedded them
        views = (
            plane.embedding if whole else plane.views.get(crop, enlarge),
            plane.views.get(turned, enlarge),
        )
        if views[0] is None or views[1] is None:  # not prepared: never embed on a click
            return masks
        guide = click_guide.guide_mask(
            plane.predictor, views, window, plane.hw, prompt.points_yx, prompt.labels,
            prompt.multimask, result if whole else None,
        )  # fmt: skip
        if self.guide_clicked_parts:
            guide = keep_clicked_components(guide[None], prompt.points_yx, prompt.labels)[0]
        guided = masks.copy()
        guided[int(np.argmax(result.scores))] = guide
        return guided
