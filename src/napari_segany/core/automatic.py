"""Everything mode: segment a whole plane from a grid of point prompts.

Same semantics as SAM's automatic mask generator, in two phases:

1. :func:`decode_grid` (expensive, a generator yielding :class:`Progress`): embeds the
   plane and its crops, decodes three masks per grid point and stores, per mask, its
   predicted IoU, stability score, area, box and the mask itself as runs (a few kB;
   speckled masks keep their 256 x 256 logits instead, so at most 256 KiB). Memory
   stays bounded: full-resolution logits exist 64 MiB at a time, never as (batch x 3 x
   H x W) tensors, and freed memory goes back to the system after every batch
   (:mod:`napari_segany.core._memory`). With a bf16 predictor the decoder runs in bf16
   (:mod:`napari_segany.core.grid_decoder`).
2. :meth:`GridCandidates.select` (cheap, no model): applies the score thresholds,
   box NMS within and across crops, removal of small holes and islands, and paints the
   label image (see :mod:`napari_segany.core.everything_select`).

:func:`segment_everything` runs both. Coordinates: points and boxes of the public
records are (y, x) in pixels of the plane; the grid is built in SAM's (x, y) order so
that masks come in upstream's order (which decides NMS ties).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from scipy import ndimage

from . import seeds
from ._memory import release_freed_memory
from .embeddings import Embedding
from .errors import InputError, NoImageError
from .everything_select import EverythingResult, FilterParams, select
from .grid_decoder import GridDecoder
from .mask_ops import (
    MaskRuns,
    boxes_near_crop_edge,
    clicked_component_statistics,
    count_above,
    encode_runs,
    masks_to_boxes,
)
from .predictor import Predictor, iter_upscaled_logits, upscale_logits
from .progress import Progress, drain

logger = logging.getLogger(__name__)


PROPOSALS = ("grid", "foreground")


@dataclass(frozen=True)
class GridParams:
    """Parameters of the expensive phase (changing one re-runs the model).

    Same meaning as in SAM's ``SamAutomaticMaskGenerator``, plus one rule of ours:
    ``clicked_component_only`` reduces every grid point's masks to their connected part
    under the point before anything is measured (area, box, stability score; see
    :func:`~napari_segany.core.mask_ops.clicked_component_statistics`). Off by default
    and for SAM's weights (upstream's results); on for the built-in model
    (``SegAny.clicked_component_only``).

    ``proposals`` says where the candidates come from: ``"grid"`` (SAM's point grid,
    the default) or ``"foreground"``: the objects of a seeded watershed on the model's
    foreground head (:mod:`~napari_segany.core.seeds`; models with a head only, i.e.
    the built-in model, whose default it is; no crops; ``points_per_side`` unused).
    ``head_zoom`` (foreground proposals only): 0 chooses per plane whether to find the
    objects on enlarged tiles, where they are small (:func:`.seeds.find_objects`); 1 to
    4 fixes the tiles per side (1: the whole plane at once). ``head_views``: 2 (default)
    averages the head over the plane and the plane turned by 180 degrees, 1 runs it on
    the plane alone (half the head's time, :data:`.seeds.HEAD_VIEWS`).
    """

    points_per_side: int = 32
    points_per_batch: int | None = None
    stability_score_offset: float = 1.0
    crop_n_layers: int = 0
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    clicked_component_only: bool = False
    proposals: str = "grid"
    head_zoom: int = 0
    head_views: int = seeds.HEAD_VIEWS

    def __post_init__(self) -> None:
        if self.proposals not in PROPOSALS:
            raise InputError(f"proposals must be one of {PROPOSALS}, got {self.proposals!r}.")
        if self.proposals == "foreground" and self.crop_n_layers:
            raise InputError(
                "proposals='foreground' works on the whole plane: set crop_n_layers=0 "
                "(or use proposals='grid' for crops)."
            )
        seeds.check_zoom(self.head_zoom)
        seeds.check_views(self.head_views)
        _check_int(self.points_per_side, "points_per_side", 1)
        if self.points_per_batch is not None:
            _check_int(self.points_per_batch, "points_per_batch", 1)
        _check_int(self.crop_n_layers, "crop_n_layers", 0)
        _check_int(self.crop_n_points_downscale_factor, "crop_n_points_downscale_factor", 1)
        if not 0.0 <= float(self.crop_overlap_ratio) < 1.0:
            raise InputError(
                f"crop_overlap_ratio must be in [0, 1), got {self.crop_overlap_ratio}."
            )
        rule = self.clicked_component_only
        if not isinstance(rule, bool | np.bool_):
            raise InputError(f"clicked_component_only must be True or False, got {rule!r}.")
        if not math.isfinite(float(self.stability_score_offset)):
            raise InputError("stability_score_offset must be a finite number (default 1.0).")


def _check_int(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def everything_params(**params) -> tuple[GridParams, FilterParams]:
    """Split everything-mode keyword arguments into the two phases' parameters.

    Raises
    ------
    InputError
        On an unknown name or an invalid value.
    """
    grid_names = {f.name for f in fields(GridParams)}
    filter_names = {f.name for f in fields(FilterParams)}
    unknown = sorted(set(params) - grid_names - filter_names)
    if unknown:
        raise InputError(
            f"Unknown everything-mode parameter(s) {unknown}; valid: "
            f"{sorted(grid_names | filter_names)}."
        )
    grid = GridParams(**{k: v for k, v in params.items() if k in grid_names})
    filters = FilterParams(**{k: v for k, v in params.items() if k in filter_names})
    return grid, filters


def crop_boxes_xyxy(
    image_hw: tuple[int, int], n_layers: int, overlap_ratio: float
) -> list[tuple[tuple[int, int, int, int], int]]:
    """Crops of every layer as ((x0, y0, x1, y1) with exclusive ends, layer).

    Layer 0 is the whole image; layer ``i`` tiles it with ``2**i`` x ``2**i`` crops that
    overlap by ``overlap_ratio`` of the short side (scaled down per layer). Crops are
    listed x-major within a layer, as upstream does.
    """
    height, width = image_hw
    crops = [((0, 0, width, height), 0)]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * min(height, width) * 2 / per_side)
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        starts_x = [int((crop_w - overlap) * i) for i in range(per_side)]
        starts_y = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0 in starts_x:
            for y0 in starts_y:
                crops.append(((x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)), layer))
    return crops


def unit_grid_xy(points_per_side: int) -> np.ndarray:
    """(n * n, 2) float64 (x, y) cell centres in [0, 1]^2, row by row (x fastest)."""
    centres = (np.arange(points_per_side) + 0.5) / points_per_side
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


@dataclass
class GridCandidates:
    """Every mask decoded from the grid (phase 1), before any threshold.

    Arrays have one entry per mask, in decoding order (crop, point, candidate).

    Attributes
    ----------
    image_hw : (int, int)
    params : GridParams
    crops_xyxy : list of (x0, y0, x1, y1)
        Crops (exclusive ends); crop 0 is the whole plane.
    crop_index : numpy.ndarray (M,) int64
    predicted_iou, stability_score : numpy.ndarray (M,) float32
    area : numpy.ndarray (M,) int64
    boxes_xyxy : numpy.ndarray (M, 4) int64
        Inclusive boxes in the frame of their crop.
    points_xy : numpy.ndarray (M, 2) float64
        The prompting point in plane pixels, (x, y).
    near_crop_edge : numpy.ndarray (M,) bool
        Box within 20 px of a crop edge that is not a plane edge (always dropped).
    runs : list of MaskRuns
        One per crop; mask ``m`` is ``runs[crop_index[m]]`` entry ``local_index[m]``.
    local_index : numpy.ndarray (M,) int64
    """

    image_hw: tuple[int, int]
    params: GridParams
    crops_xyxy: list[tuple[int, int, int, int]] = field(default_factory=list)
    crop_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    predicted_iou: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    stability_score: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    area: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    boxes_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    points_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    near_crop_edge: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    runs: list[MaskRuns] = field(default_factory=list)
    local_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.predicted_iou)

    @property
    def nbytes(self) -> int:
        """Approximate memory held, in bytes."""
        arrays = [getattr(self, f.name) for f in fields(self)]
        held = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
        return held + sum(r.nbytes for r in self.runs)

    def select(self, filters: FilterParams | None = None, **params) -> EverythingResult:
        """Phase 2: thresholds, NMS, small-region removal, label image (no model)."""
        return select(self, filters if filters is not None else FilterParams(**params))


def decode_grid(
    predictor: Predictor,
    rgb_uint8: np.ndarray | None,
    params: GridParams | None = None,
    embedding: Embedding | None = None,
    embed: Callable[[np.ndarray], Embedding] | None = None,
) -> Generator[Progress, None, GridCandidates]:
    """Phase 1 of everything mode, as a generator (run it with :func:`drain`).

    Parameters
    ----------
    predictor : Predictor
    rgb_uint8 : numpy.ndarray, (H, W, 3) uint8, or None
        The plane as the model sees it (``core.image.to_model_rgb``); crops and the
        foreground head's zoomed tiles are cut from it. None (only the embedding is
        known, which it then must be): no crops, no zoom.
    params : GridParams, optional
    embedding : Embedding, optional
        The plane's embedding if already computed (e.g. cached); else it is computed.
    embed : callable, optional
        ``rgb -> Embedding`` used for the plane and its crops (default
        ``predictor.embed``), e.g. to go through a cache.

    Yields
    ------
    Progress
        One report per embedded crop and per decoded batch of points.

    Returns
    -------
    GridCandidates
    """
    params = params or GridParams()
    embed = embed or predictor.embed
    if rgb_uint8 is None:
        if embedding is None or params.crop_n_layers > 0:
            raise NoImageError(
                "Crops are cut from the image: call set_image(plane) instead of "
                "set_embedding(...) to use crop_n_layers > 0."
                if embedding is not None
                else "Everything mode needs the plane or its embedding."
            )
        image_hw = tuple(int(v) for v in embedding.original_hw)
    else:
        image_hw = (int(rgb_uint8.shape[0]), int(rgb_uint8.shape[1]))
    if embedding is not None and tuple(embedding.original_hw) != image_hw:
        raise InputError(
            f"The embedding is for a {embedding.original_hw} plane but the image is "
            f"{image_hw}; pass the embedding of this plane (or none)."
        )
    if params.proposals == "foreground":
        return (yield from _foreground_candidates(predictor, rgb_uint8, params, embedding, embed))
    crops = crop_boxes_xyxy(image_hw, params.crop_n_layers, params.crop_overlap_ratio)
    batch = params.points_per_batch or 64
    grids = [
        unit_grid_xy(int(params.points_per_side / params.crop_n_points_downscale_factor**layer))
        for layer in range(params.crop_n_layers + 1)
    ]
    total = sum(len(crops) + math.ceil(len(grids[layer]) / batch) for _, layer in crops)
    done, parts = 0, []
    decoder = GridDecoder(predictor.model, predictor.device, predictor.precision)
    for index, (crop, layer) in enumerate(crops):
        yield Progress(done, total, f"embedding crop {index + 1}/{len(crops)}")
        x0, y0, x1, y1 = crop
        crop_embedding = embedding if index == 0 and embedding is not None else None
        if crop_embedding is None:
            crop_embedding = embed(np.ascontiguousarray(rgb_uint8[y0:y1, x0:x1]))
            release_freed_memory()  # the encoder's temporaries
        done += 1
        points_xy = grids[layer] * np.array([x1 - x0, y1 - y0], dtype=np.float64)
        crop_parts = []
        for start in range(0, len(points_xy), batch):
            yield Progress(done, total, f"crop {index + 1}/{len(crops)}: points {start}")
            chunk = points_xy[start : start + batch]
            crop_parts.append(_decode_points(decoder, crop_embedding, chunk, params))
            release_freed_memory()  # the decoder's and upscaling's temporaries
            done += 1
        parts.append((crop, points_xy, crop_parts))
    yield Progress(total, total, "decoded")
    return _assemble(image_hw, params, parts)


def _foreground_candidates(
    predictor: Predictor,
    rgb_uint8: np.ndarray,
    params: GridParams,
    embedding: Embedding | None,
    embed: Callable[[np.ndarray], Embedding],
) -> Generator[Progress, None, GridCandidates]:
    """``proposals="foreground"``: the objects of :mod:`.seeds` as candidates, one per
    object, in the whole-plane crop (zoomed tiles, if any, are embedded with
    ``predictor.embed``, not through the cache)."""
    predictor.model.require_foreground_head()  # before the embedding is computed
    yield Progress(0, 2, "embedding")
    if embedding is None:
        embedding = embed(rgb_uint8)
    yield Progress(1, 2, "foreground head")
    found = seeds.find_objects(
        predictor.model, embedding, rgb_uint8, predictor.embed, params.head_zoom, params.head_views
    )
    labels, seeds_yx = found.labels, found.seeds_yx
    height, width = embedding.original_hw
    count = len(seeds_yx)
    offset = float(params.stability_score_offset)
    mean_probability, confident = seeds.object_scores(
        found.foreground_logits, labels, count, offset
    )
    edges, offsets = seeds.label_runs(labels, count)
    boxes = np.zeros((count, 4), np.int64)
    for index, found in enumerate(ndimage.find_objects(labels, count)):
        if found is not None:  # a seed always keeps its own pixels
            rows, cols = found
            boxes[index] = (cols.start, rows.start, cols.stop - 1, rows.stop - 1)
    result = GridCandidates((height, width), params)
    result.crops_xyxy = [(0, 0, width, height)]
    result.crop_index = np.zeros(count, np.int64)
    result.predicted_iou = mean_probability
    result.stability_score = confident
    result.area = np.bincount(labels.reshape(-1), minlength=count + 1)[1:].astype(np.int64)
    result.boxes_xyxy = boxes
    result.points_xy = seeds_yx[:, ::-1].copy()
    result.near_crop_edge = np.zeros(count, bool)
    result.runs = [MaskRuns(edges, offsets, (height, width))]
    result.local_index = np.arange(count, dtype=np.int64)
    yield Progress(2, 2, "decoded")
    return result


def _decode_points(
    decoder: GridDecoder, embedding: Embedding, points_xy: np.ndarray, params: GridParams
) -> dict:
    """Decode one batch of points (crop frame, (x, y)); per-mask statistics and runs."""
    image_size = decoder.model.image_size
    low_res, iou = decoder.decode(embedding, points_xy)
    points_yx = None
    if params.clicked_component_only:  # one row per mask: (y, x) of its point
        points_yx = np.repeat(points_xy[:, ::-1], low_res.shape[1], axis=0)
    with torch.inference_mode():
        stats = _mask_statistics(
            low_res.flatten(0, 1),
            embedding.input_hw,
            embedding.original_hw,
            image_size,
            float(params.stability_score_offset),
            points_yx,
        )
    stats["predicted_iou"] = iou.flatten().cpu().numpy()
    stats["to_frame"] = functools.partial(
        upscale_logits,
        input_hw=embedding.input_hw,
        out_hw=embedding.original_hw,
        image_size=image_size,
    )
    return stats


def _mask_statistics(
    low_res: torch.Tensor,
    input_hw: tuple[int, int],
    crop_hw: tuple[int, int],
    image_size: int,
    offset: float,
    points_yx: np.ndarray | None = None,
) -> dict:
    """Stability, area, box and runs of (n, 256, 256) logits at crop resolution.

    The logits are upscaled a chunk at a time (64 MiB); per mask only counts, a box and
    its runs are kept. Masks with more run edges than low-res values keep their logits
    (``"dense"``, one block per batch), so each mask costs at most 256 KiB. With
    ``points_yx`` ((n, 2), each mask's prompting point in the crop), every mask is first
    reduced to its part under its point (``GridParams.clicked_component_only``); a
    reduced mask too speckled for runs keeps its whole logits (not seen in practice:
    one connected part).
    """
    pieces: dict[str, list] = {"counts": [], "boxes": [], "edges": [], "n_edges": []}
    speckled = []
    budget = low_res.shape[-2] * low_res.shape[-1]  # int32 edges vs float32 logits
    chunks = iter_upscaled_logits(low_res, input_hw, crop_hw, image_size)
    for start, logits in chunks:
        if points_yx is not None:
            points = points_yx[start : start + logits.shape[0]]
            counts, masks = clicked_component_statistics(logits, points, offset)
            pieces["counts"].append(counts)
        else:
            # (strict, area, loose): logits > offset, > 0, > -offset (upstream's)
            pieces["counts"].append(count_above(logits, (offset, 0.0, -offset)))
            masks = logits > 0.0  # boxes and runs are found where the logits are (CUDA too)
        del logits
        pieces["boxes"].append(masks_to_boxes(masks))
        edges, n_edges, too_many = encode_runs(masks, max_edges=budget)
        pieces["edges"].append(edges)
        pieces["n_edges"].append(n_edges)
        speckled.extend(start + np.flatnonzero(too_many))
    counts = np.concatenate(pieces["counts"])
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0: nan, as upstream
        stability = counts[:, 0].astype(np.float32) / counts[:, 2].astype(np.float32)
    kept_logits = low_res[torch.as_tensor(speckled, dtype=torch.int64)].clone()  # exact
    return {
        "stability_score": stability,
        "area": counts[:, 1],
        "boxes_xyxy": np.concatenate(pieces["boxes"]),
        "edges": np.concatenate(pieces["edges"]),
        "counts": np.concatenate(pieces["n_edges"]),
        "dense": {int(index): kept_logits[k] for k, index in enumerate(speckled)},
    }


def _assemble(image_hw: tuple[int, int], params: GridParams, parts: list) -> GridCandidates:
    """Concatenate the per-batch statistics of every crop into :class:`GridCandidates`."""
    result = GridCandidates(image_hw, params)
    columns: dict[str, list] = {name: [] for name in ("iou", "stab", "area", "boxes", "xy")}
    crop_ids, edge_flags, locals_ = [], [], []
    for crop_id, (crop, points_xy, batches) in enumerate(parts):
        x0, y0, x1, y1 = crop
        result.crops_xyxy.append(crop)
        counts = np.concatenate([b["counts"] for b in batches])
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        dense, first = {}, 0
        for batch in batches:
            dense.update({first + j: logits for j, logits in batch["dense"].items()})
            first += len(batch["counts"])
        edges = _move_edges(batches, offsets[-1])
        frame_hw = (y1 - y0, x1 - x0)
        result.runs.append(MaskRuns(edges, offsets, frame_hw, dense, batches[0]["to_frame"]))
        boxes = np.concatenate([b["boxes_xyxy"] for b in batches])
        columns["iou"].append(np.concatenate([b["predicted_iou"] for b in batches]))
        columns["stab"].append(np.concatenate([b["stability_score"] for b in batches]))
        columns["area"].append(np.concatenate([b["area"] for b in batches]))
        columns["boxes"].append(boxes)
        candidates_per_point = len(boxes) // len(points_xy)
        columns["xy"].append(np.repeat(points_xy + [x0, y0], candidates_per_point, axis=0))
        near = boxes_near_crop_edge(torch.as_tensor(boxes), crop, image_hw).numpy()
        edge_flags.append(near)
        crop_ids.append(np.full(len(boxes), crop_id, dtype=np.int64))
        locals_.append(np.arange(len(boxes), dtype=np.int64))
    result.predicted_iou = np.concatenate(columns["iou"]).astype(np.float32)
    result.stability_score = np.concatenate(columns["stab"])
    result.area = np.concatenate(columns["area"])
    result.boxes_xyxy = np.concatenate(columns["boxes"]).astype(np.int64)
    result.points_xy = np.concatenate(columns["xy"])
    result.near_crop_edge = np.concatenate(edge_flags)
    result.crop_index = np.concatenate(crop_ids)
    result.local_index = np.concatenate(locals_)
    return result


def _move_edges(batches: list[dict], total: int) -> np.ndarray:
    """Concatenate the batches' run edges, freeing each batch's copy as it goes.

    Plain concatenation would hold the run edges (most of phase 1's memory) twice.
    """
    edges = np.empty(int(total), dtype=np.int32)
    start = 0
    for batch in batches:
        part = batch.pop("edges")
        edges[start : start + part.size] = part
        start += part.size
    return edges


def segment_everything(
    predictor: Predictor,
    rgb_uint8: np.ndarray,
    embedding: Embedding | None = None,
    embed: Callable[[np.ndarray], Embedding] | None = None,
    on_progress: Callable[[Progress], object] | None = None,
    **params,
) -> EverythingResult:
    """Everything mode on one plane: both phases (see the module docstring).

    Parameters
    ----------
    predictor, rgb_uint8, embedding, embed
        As in :func:`decode_grid`.
    on_progress : callable, optional
        Called with every :class:`Progress` report.
    **params
        ``points_per_side=32, points_per_batch=None, pred_iou_thresh=0.88,
        stability_score_thresh=0.95, stability_score_offset=1.0, box_nms_thresh=0.7,
        crop_n_layers=0, crop_nms_thresh=0.7, crop_overlap_ratio=512/1500,
        crop_n_points_downscale_factor=1, min_mask_region_area=0`` (SAM's meanings).

    Returns
    -------
    EverythingResult
        ``.labels`` (H, W) uint32 and ``.objects`` records.
    """
    grid, filters = everything_params(**params)
    candidates = drain(decode_grid(predictor, rgb_uint8, grid, embedding, embed), on_progress)
    return candidates.select(filters)
