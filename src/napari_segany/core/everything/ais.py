"""Automatic instance segmentation from an instance decoder's maps (micro-sam's "AIS").

The decoder (``core.model.instance_decoder``) predicts per pixel a foreground
probability, a distance to the object's centre and an (inverted) distance to its
boundary, all in [0, 1]. Objects follow by a seeded watershed, with micro-sam's
post-processing semantics and defaults (:class:`AisParams`):

1. the foreground is smoothed (Gaussian, ``foreground_smoothing``), the two distances
   too (``distance_smoothing``): Gaussians truncated at 3 sigma, mirrored at the
   border, as micro-sam's filters compute them;
2. foreground = smoothed foreground > ``foreground_threshold``;
3. seeds = connected regions (8-connected) of foreground pixels near a centre *and*
   away from a boundary (centre distance < ``center_distance_threshold`` and boundary
   distance < ``boundary_distance_threshold``): both, so that narrow neighbours do not
   merge (centre alone) and non-convex cells do not split (boundary alone);
4. a watershed of the boundary distances from the seeds, within the foreground;
5. objects smaller than ``min_size`` pixels are dropped and the ids made consecutive.

The maps are the network's; step 1-5 cost a fraction of a second per megapixel, so
changing a parameter re-runs only these (the network is not run again).

Equal to micro-sam's labels (``tests/core/test_ais.py``, which runs its code on
bioimage-cpp's filters and watershed): the Gaussians agree to 1e-7; the watersheds
(scikit-image's here) break ties between equal heights in another order, so on noisy
maps without distance smoothing a few pixels of small fragments can differ (4 of
6392 foreground pixels in one such case).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import watershed

from ..errors import InputError
from ..model.instance_decoder import maps_on_plane
from ..plugins import PlaneContext
from ..progress import Progress
from .candidates import GridCandidates, labels_as_candidates

__all__ = ["MAPS_KEY", "AisParams", "AisProposer", "ais_labels", "decoder_maps", "maps_of"]

_EIGHT_NEIGHBOURS = np.ones((3, 3), bool)
# phase-2 defaults of decoder modes: micro-sam keeps every object its post-processing
# leaves (no score thresholds, no box NMS)
KEEP_EVERY_OBJECT = MappingProxyType(
    {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
)


@dataclass(frozen=True)
class AisParams:
    """micro-sam's ``InstanceSegmentationWithDecoder.generate`` parameters and defaults
    (module docstring)."""

    center_distance_threshold: float = 0.5
    boundary_distance_threshold: float = 0.5
    foreground_threshold: float = 0.5
    foreground_smoothing: float = 1.0
    distance_smoothing: float = 1.6
    min_size: int = 0

    def __post_init__(self) -> None:
        for name in ("foreground_smoothing", "distance_smoothing", "min_size"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)!r}.")


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return values
    return ndimage.gaussian_filter(values, sigma, mode="mirror", truncate=3.0)


def ais_labels(
    foreground: np.ndarray,
    center_distances: np.ndarray,
    boundary_distances: np.ndarray,
    params: AisParams | None = None,
) -> np.ndarray:
    """Objects from the decoder's maps (module docstring).

    Parameters
    ----------
    foreground, center_distances, boundary_distances : numpy.ndarray, (H, W) float
        The decoder's three maps on the plane.
    params : AisParams, optional

    Returns
    -------
    numpy.ndarray, (H, W) int32
        0 background, objects 1..N.
    """
    params = params or AisParams()
    shapes = {foreground.shape, center_distances.shape, boundary_distances.shape}
    if len(shapes) != 1 or foreground.ndim != 2:
        raise InputError(f"The three maps must be one (H, W) shape each, got {sorted(shapes)}.")
    maps = [np.asarray(m, np.float32) for m in (foreground, center_distances, boundary_distances)]
    inside = _smooth(maps[0], params.foreground_smoothing) > params.foreground_threshold
    center = _smooth(maps[1], params.distance_smoothing)
    boundary = _smooth(maps[2], params.distance_smoothing)
    seeds = inside & (center < params.center_distance_threshold)
    seeds &= boundary < params.boundary_distance_threshold
    markers, _ = ndimage.label(seeds, _EIGHT_NEIGHBOURS)
    labels = watershed(boundary, markers, mask=inside).astype(np.int32)
    if params.min_size > 0:
        sizes = np.bincount(labels.ravel())
        small = np.flatnonzero(sizes < params.min_size)
        labels[np.isin(labels, small[small > 0])] = 0
    kept = np.unique(labels)
    kept = kept[kept > 0]
    lookup = np.zeros(int(labels.max()) + 1, np.int32)
    lookup[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return lookup[labels]


class AisProposer:
    """Everything mode from the model's instance decoder (``core.plugins.Proposer``):
    :func:`ais_labels` of its maps, one candidate per object, never overlapping.

    Offered by sessions whose model carries an ``instance_decoder`` (micro-sam's
    ``*_lm`` and ``*_em_organelles`` models; ``"auto"`` then picks it). The decoder's
    maps are kept with the plane (``PlaneContext.prepared``), so other parameters run
    only the watershed. ``predicted_iou`` is an object's mean foreground probability,
    ``stability_score`` the share of its pixels above ``foreground_threshold``
    (unsmoothed), ``points_xy`` its most central pixel by the centre distances.
    """

    name = "ais"
    description = "micro-sam's instance decoder: foreground and distances, seeded watershed"
    params_type = AisParams
    filters = MappingProxyType(
        {"pred_iou_thresh": "min foreground prob", "min_mask_region_area": "min region area"}
    )
    # micro-sam keeps every watershed object: no score thresholds, no NMS (never overlap)
    filter_defaults = KEEP_EVERY_OBJECT

    def propose(
        self, plane: PlaneContext, params: AisParams
    ) -> Generator[Progress, None, GridCandidates]:
        """The plane's objects as :class:`GridCandidates`."""
        maps = yield from maps_of(plane)
        yield Progress(1, 2, "watershed")
        foreground, center, _ = maps
        labels = ais_labels(*maps, params)
        count = int(labels.max())
        index = np.arange(1, count + 1)
        mean = np.asarray(ndimage.mean(foreground, labels, index), np.float32).reshape(-1)
        sure = foreground > params.foreground_threshold
        share = np.asarray(ndimage.mean(sure, labels, index), np.float32).reshape(-1)
        centres = ndimage.minimum_position(center, labels, index) if count else []
        points_xy = np.array([(x, y) for y, x in centres], np.float64).reshape(-1, 2)
        yield Progress(2, 2, "decoded")
        return labels_as_candidates(labels, params, mean, share, points_xy)


MAPS_KEY = "instance decoder maps"  # in PlaneContext.prepared: (foreground, centre, boundary)


def maps_of(plane: PlaneContext) -> Generator[Progress, None, tuple]:
    """:func:`decoder_maps` of the plane, computed once and kept with it
    (``PlaneContext.prepared``) for every mode that reads them."""
    maps = plane.prepared.get(MAPS_KEY)
    if maps is None:
        yield Progress(0, 2, "instance decoder")
        maps = plane.prepared[MAPS_KEY] = decoder_maps(plane)
    return maps


def decoder_maps(plane: PlaneContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's instance-decoder maps of a plane: foreground, centre distances,
    boundary distances, each (H, W) float32 (``core.model.instance_decoder``). Under
    the session's ``"bf16"`` precision the decoder runs in bf16 autocast, as the image
    encoder does (measured: 3.5 -> 1.7 s per 1024 x 1024 plane at 2 CPU threads, maps
    within 0.013 of float32's)."""
    model = plane.predictor.model
    decoder = getattr(model, "instance_decoder", None)
    if decoder is None:
        raise InputError(
            f"Model {plane.predictor.name!r} has no instance decoder, so modes 'ais' and "
            "'apg' are not available; use mode='grid' (or a micro-sam model with a "
            "decoder, e.g. vit_b_lm)."
        )
    embedding = plane.embedding
    features = embedding.features.to(plane.predictor.device)
    with torch.inference_mode(), plane.predictor.autocast():  # as the image encoder runs
        maps = maps_on_plane(decoder(features), embedding.input_hw, embedding.original_hw)
    foreground, center, boundary = maps[0].float().cpu().numpy()
    return foreground, center, boundary
