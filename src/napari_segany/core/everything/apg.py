"""Everything mode from prompts placed by an instance decoder (micro-sam's "APG").

The instance decoder's maps (:func:`.ais.decoder_maps`) say where objects are; instead
of a watershed (``"ais"``), each object's seed prompts SAM, which draws its outline.
micro-sam's ``AutomaticPromptGenerator`` semantics and defaults (:class:`ApgParams`):

1. seeds = 4-connected regions of pixels with foreground >= ``foreground_threshold``,
   centre distance < ``center_distance_threshold`` and boundary distance <
   ``boundary_distance_threshold`` (the maps unsmoothed);
2. each seed's prompt is its most interior pixel: the maximum of the distance to the
   seed's outer boundary and to the plane's border (:func:`interior_points_yx`);
3. SAM decodes every prompt in batches, one mask each (``multimask``: the best of three
   by predicted IoU), thresholded at 0; stability score with offset 1;
4. optionally (``box_refinement``) every mask's box, grown by 1 % of its size each
   side, prompts SAM once more and that mask replaces it;
5. mask NMS and exclusive painting (:mod:`.mask_nms`, ``min_size``, ``nms_threshold``,
   ``intersection_over_min``).

Two phases: the decoder maps are kept with the plane (as for ``"ais"``) and the decoded
masks for the last prompt settings, so ``nms_threshold``, ``min_size`` and
``intersection_over_min`` re-run step 5 only.

Departures from micro-sam, both where its result is not what it means to do: a seed
whose pixels all lie on the plane's border (distance 0 everywhere) is prompted at its
first pixel, not at its box's corner (which may lie outside it); boxes grown in step 4
are clipped to the plane's width and height (micro-sam clips x to the height).
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import find_boundaries

from .._memory import release_freed_memory
from ..embeddings import Embedding
from ..errors import InputError
from ..plugins import PlaneContext
from ..predictor import Predictor, upscale_logits
from ..progress import Progress
from .ais import KEEP_EVERY_OBJECT, maps_of
from .candidates import GridCandidates, assemble_candidates, labels_as_candidates
from .grid import mask_statistics
from .grid_decoder import GridDecoder
from .mask_nms import mask_nms, paint_exclusive

__all__ = ["ApgParams", "ApgProposer", "apg_labels", "decode_prompts", "seed_points_yx"]

BOX_GROWTH = 0.01  # micro-sam's box_extension
_STABILITY_OFFSET = 1.0


@dataclass(frozen=True)
class ApgParams:
    """micro-sam's ``AutomaticPromptGenerator.generate`` parameters and defaults
    (``box_refinement`` is its ``refine_with_box_prompts``, ``multimask`` its
    ``multimasking``, ``prompts_per_batch`` its ``batch_size``)."""

    center_distance_threshold: float = 0.5
    boundary_distance_threshold: float = 0.5
    foreground_threshold: float = 0.5
    min_size: int = 25
    nms_threshold: float = 0.9
    intersection_over_min: bool = False
    box_refinement: bool = False
    multimask: bool = False
    prompts_per_batch: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.min_size, bool) or int(self.min_size) != self.min_size:
            raise InputError(f"min_size must be an integer >= 0, got {self.min_size!r}.")
        if self.min_size < 0:
            raise InputError(f"min_size must be >= 0, got {self.min_size!r}.")
        if not 0.0 <= float(self.nms_threshold) <= 1.0:
            raise InputError(f"nms_threshold must be in [0, 1], got {self.nms_threshold!r}.")
        for name in ("intersection_over_min", "box_refinement", "multimask"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        batch = self.prompts_per_batch
        if isinstance(batch, bool) or int(batch) != batch or batch < 1:
            raise InputError(f"prompts_per_batch must be an integer >= 1, got {batch!r}.")

    @property
    def prompt_settings(self) -> tuple:
        """What the decoded masks depend on (the rest is step 5)."""
        return (
            float(self.center_distance_threshold),
            float(self.boundary_distance_threshold),
            float(self.foreground_threshold),
            bool(self.box_refinement),
            bool(self.multimask),
        )


def seed_points_yx(
    foreground: np.ndarray,
    center_distances: np.ndarray,
    boundary_distances: np.ndarray,
    params: ApgParams | None = None,
) -> np.ndarray:
    """One prompt per seed region (module docstring, steps 1-2).

    Parameters
    ----------
    foreground, center_distances, boundary_distances : numpy.ndarray, (H, W) float
        The decoder's maps.
    params : ApgParams, optional

    Returns
    -------
    numpy.ndarray, (n, 2) int64
        (y, x) of each seed's prompt, seeds in scan order of their first pixel.
    """
    params = params or ApgParams()
    seeds = foreground >= params.foreground_threshold
    seeds &= center_distances < params.center_distance_threshold
    seeds &= boundary_distances < params.boundary_distance_threshold
    regions, _ = ndimage.label(seeds)  # 4-connected, numbered in scan order
    return interior_points_yx(regions)


def interior_points_yx(regions: np.ndarray) -> np.ndarray:
    """Each region's pixel farthest from its outer boundary and from the plane's border
    (the first such pixel in scan order on ties).

    Parameters
    ----------
    regions : numpy.ndarray, (H, W) int
        Regions 1..n (consecutive), 0 background.

    Returns
    -------
    numpy.ndarray, (n, 2) int64
        (y, x) per region, in region order.
    """
    inside = ~find_boundaries(regions, mode="outer")
    inside[[0, -1], :] = False
    inside[:, [0, -1]] = False
    distances = ndimage.distance_transform_edt(inside).ravel()
    flat = regions.ravel()
    pixels = np.flatnonzero(flat)
    if pixels.size == 0:
        return np.zeros((0, 2), np.int64)
    # by region, then farthest first, then scan order
    order = np.lexsort((pixels, -distances[pixels], flat[pixels]))
    ranked = pixels[order]
    first = np.concatenate([[True], np.diff(flat[ranked]) != 0])
    return np.stack(np.unravel_index(ranked[first], regions.shape), axis=1).astype(np.int64)


def decode_prompts(
    predictor: Predictor,
    embedding: Embedding,
    points_xy: np.ndarray,
    params: ApgParams,
    boxes_xyxy: np.ndarray | None = None,
) -> Generator[Progress, None, GridCandidates]:
    """One mask per prompt, in batches (step 3; with ``boxes_xyxy``, box prompts).

    Parameters
    ----------
    predictor : Predictor
    embedding : Embedding
        The plane's.
    points_xy : numpy.ndarray, (n, 2) float
        The prompts' points (x, y); with ``boxes_xyxy`` only recorded as their points.
    params : ApgParams
    boxes_xyxy : numpy.ndarray, (n, 4) float, optional
        Box prompts (x0, y0, x1, y1) in plane pixels, one per point.

    Returns
    -------
    GridCandidates
        One candidate per prompt, in prompt order (crop 0 = the plane).
    """
    height, width = (int(v) for v in embedding.original_hw)
    decoder = GridDecoder(predictor.model, predictor.device, predictor.precision)
    batch, batches = int(params.prompts_per_batch), []
    for start in range(0, len(points_xy), batch):
        yield Progress(start, len(points_xy), f"prompts {start}/{len(points_xy)}")
        part = slice(start, start + batch)
        points = None if boxes_xyxy is not None else points_xy[part]
        boxes = None if boxes_xyxy is None else boxes_xyxy[part]
        low_res, iou = decoder.decode(embedding, points, boxes, params.multimask)
        batches.append(_one_mask_each(predictor, embedding, low_res, iou))
        release_freed_memory()
    parts = [((0, 0, width, height), np.asarray(points_xy, np.float64), batches)] if batches else []
    if not parts:
        return labels_as_candidates(np.zeros((height, width), np.int32), params, *_empty())
    return assemble_candidates((height, width), params, parts)


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros((0, 2))


def _one_mask_each(
    predictor: Predictor, embedding: Embedding, low_res: torch.Tensor, iou: torch.Tensor
) -> dict:
    """The statistics and runs of each prompt's mask (the best by predicted IoU when
    several were decoded, as micro-sam's ``reduce_multimasking``)."""
    best = iou.argmax(dim=1)
    rows = torch.arange(len(best))
    low_res, iou = low_res[rows, best], iou[rows, best]
    model = predictor.model
    with torch.inference_mode():
        stats = mask_statistics(
            low_res,
            embedding.input_hw,
            embedding.original_hw,
            model.image_size,
            _STABILITY_OFFSET,
            square=model.square_frame,
        )
    stats["predicted_iou"] = iou.cpu().numpy()
    stats["to_frame"] = functools.partial(
        upscale_logits,
        input_hw=embedding.input_hw,
        out_hw=embedding.original_hw,
        image_size=model.image_size,
        square=model.square_frame,
    )
    return stats


def grown_boxes_xyxy(boxes_xyxy: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Step 4's box prompts: each inclusive mask box grown by :data:`BOX_GROWTH` of its
    width and height on each side, clipped to the plane ((n, 4) float64)."""
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    size = boxes[:, 2:] - boxes[:, :2]
    low = np.maximum(boxes[:, :2] - BOX_GROWTH * size, 0.0)
    high = np.minimum(boxes[:, 2:] + BOX_GROWTH * size, [image_hw[1], image_hw[0]])
    return np.concatenate([low, high], axis=1)


def apg_decode(
    predictor: Predictor, embedding: Embedding, maps: tuple, params: ApgParams
) -> Generator[Progress, None, GridCandidates]:
    """Steps 1-4: every prompt's mask, before NMS."""
    points_xy = seed_points_yx(*maps, params)[:, ::-1].astype(np.float64)
    candidates = yield from decode_prompts(predictor, embedding, points_xy, params)
    if params.box_refinement and len(candidates):
        boxes = grown_boxes_xyxy(candidates.boxes_xyxy, candidates.image_hw)
        candidates = yield from decode_prompts(predictor, embedding, points_xy, params, boxes)
    return candidates


def apg_labels(candidates: GridCandidates, params: ApgParams) -> GridCandidates:
    """Step 5: the objects left by mask NMS and painting, one candidate each, with their
    mask's predicted IoU, stability score and prompt point."""
    big = np.flatnonzero(candidates.area > params.min_size) if params.min_size > 0 else None
    index = np.arange(len(candidates)) if big is None else big
    kept = mask_nms(candidates, index, params.nms_threshold, params.intersection_over_min)
    labels, source = paint_exclusive(candidates, kept, params.min_size)
    return labels_as_candidates(
        labels,
        params,
        candidates.predicted_iou[source],
        candidates.stability_score[source],
        candidates.points_xy[source],
    )


class ApgProposer:
    """Everything mode from the instance decoder's seeds prompting SAM
    (``core.plugins.Proposer``; module docstring).

    Offered with ``"ais"`` by sessions whose model carries an ``instance_decoder``.
    ``predicted_iou`` and ``stability_score`` of an object are those of the mask it
    was painted from; ``points_xy`` that mask's prompt.
    """

    name = "apg"
    description = "micro-sam's prompts from the instance decoder: its seeds prompt SAM"
    params_type = ApgParams
    filters = MappingProxyType(
        {"pred_iou_thresh": "pred IoU thresh", "stability_score_thresh": "stability thresh"}
    )
    filter_defaults = KEEP_EVERY_OBJECT  # micro-sam keeps every object its NMS leaves

    def propose(
        self, plane: PlaneContext, params: ApgParams
    ) -> Generator[Progress, None, GridCandidates]:
        """The plane's objects as :class:`GridCandidates`."""
        cached = plane.prepared.get(_MASKS)
        if cached is None or cached[0] != params.prompt_settings:
            maps = yield from maps_of(plane)
            masks = yield from apg_decode(plane.predictor, plane.embedding, maps, params)
            plane.prepared[_MASKS] = cached = (params.prompt_settings, masks)
        yield Progress(1, 2, "mask NMS")
        result = apg_labels(cached[1], params)
        yield Progress(2, 2, "decoded")
        return result


_MASKS = "apg: masks of the last prompts"
