"""Everything mode: segment a whole plane from a grid of point prompts.

Same semantics as SAM's automatic mask generator, in two phases:

1. :func:`decode_grid` (expensive, a generator yielding :class:`Progress`): embeds the
   plane and its crops, decodes three masks per grid point and stores, per mask, its
   predicted IoU, stability score, area, box and the mask itself as runs (a few kB;
   speckled masks keep their 256 x 256 logits instead, so at most 256 KiB). Memory
   stays bounded: full-resolution logits exist 64 MiB at a time, never as (batch x 3 x
   H x W) tensors, and freed memory goes back to the system after every batch
   (:mod:`napari_segany.core._memory`). With a bf16 predictor the decoder runs in bf16
   (:mod:`.grid_decoder`).
2. :meth:`GridCandidates.select` (cheap, no model): applies the score thresholds,
   box NMS within and across crops, removal of small holes and islands, and paints the
   label image (see :mod:`.selection`).

:class:`GridProposer` is phase 1 as a proposer (``core.plugins``). Coordinates: points
and boxes of the public records are (y, x) in pixels of the plane; the grid is built
in SAM's (x, y) order so that masks come in upstream's order (which decides NMS ties).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

from .._memory import release_freed_memory
from ..embeddings import Embedding
from ..errors import InputError, NoImageError
from ..mask_ops import clicked_component_statistics, count_above, masks_to_boxes
from ..mask_runs import encode_runs
from ..plugins import PlaneContext
from ..predictor import Predictor, iter_upscaled_logits, upscale_logits
from ..progress import Progress, drain
from .candidates import GridCandidates, assemble_candidates
from .grid_decoder import GridDecoder
from .selection import EverythingResult, FilterParams

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GridParams:
    """Parameters of the expensive phase (changing one re-runs the model).

    Same meaning as in SAM's ``SamAutomaticMaskGenerator``, plus one rule of ours:
    ``clicked_component_only`` reduces every grid point's masks to their connected part
    under the point before anything is measured (area, box, stability score; see
    :func:`~napari_segany.core.mask_ops.clicked_component_statistics`). Off by default
    and for SAM's weights (upstream's results); on for the built-in model
    (``SegAny.clicked_component_only``).

    ``use_m2m`` is SAM 2's generator's optional refinement: every candidate is decoded
    once more from its point with its own low-resolution logits as the mask prompt
    (one mask), and that mask, its predicted IoU and stability replace the candidate's
    (:meth:`.GridDecoder.refine`; about one more decode per candidate). Any model can
    use it; off by default, as in the reference.
    """

    points_per_side: int = 32
    points_per_batch: int | None = None
    stability_score_offset: float = 1.0
    crop_n_layers: int = 0
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    clicked_component_only: bool = False
    use_m2m: bool = False

    def __post_init__(self) -> None:
        _check_int(self.points_per_side, "points_per_side", 1)
        if self.points_per_batch is not None:
            _check_int(self.points_per_batch, "points_per_batch", 1)
        _check_int(self.crop_n_layers, "crop_n_layers", 0)
        _check_int(self.crop_n_points_downscale_factor, "crop_n_points_downscale_factor", 1)
        if not 0.0 <= float(self.crop_overlap_ratio) < 1.0:
            raise InputError(
                f"crop_overlap_ratio must be in [0, 1), got {self.crop_overlap_ratio}."
            )
        for name in ("clicked_component_only", "use_m2m"):
            rule = getattr(self, name)
            if not isinstance(rule, bool | np.bool_):
                raise InputError(f"{name} must be True or False, got {rule!r}.")
        if not math.isfinite(float(self.stability_score_offset)):
            raise InputError("stability_score_offset must be a finite number (default 1.0).")


def _check_int(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}.")


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
        The plane as the model sees it (``core.image.to_model_rgb``); crops are cut
        from it. None (only the embedding is known, which it then must be): no crops.
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
                "Crops are cut from the image: call set_image(plane), not "
                "set_image(None, embedding=...), to use crop_n_layers > 0."
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
    return assemble_candidates(image_hw, params, parts)


def _decode_points(
    decoder: GridDecoder, embedding: Embedding, points_xy: np.ndarray, params: GridParams
) -> dict:
    """Decode one batch of points (crop frame, (x, y)); per-mask statistics and runs."""
    image_size, square = decoder.model.image_size, decoder.model.square_frame
    low_res, iou = decoder.decode(embedding, points_xy)
    if params.use_m2m:
        low_res, iou = decoder.refine(embedding, points_xy, low_res)
    points_yx = None
    if params.clicked_component_only:  # one row per mask: (y, x) of its point
        points_yx = np.repeat(points_xy[:, ::-1], low_res.shape[1], axis=0)
    with torch.inference_mode():
        stats = mask_statistics(
            low_res.flatten(0, 1),
            embedding.input_hw,
            embedding.original_hw,
            image_size,
            float(params.stability_score_offset),
            points_yx,
            square,
        )
    stats["predicted_iou"] = iou.flatten().cpu().numpy()
    stats["to_frame"] = functools.partial(
        upscale_logits,
        input_hw=embedding.input_hw,
        out_hw=embedding.original_hw,
        image_size=image_size,
        square=square,
    )
    return stats


def mask_statistics(
    low_res: torch.Tensor,
    input_hw: tuple[int, int],
    crop_hw: tuple[int, int],
    image_size: int,
    offset: float,
    points_yx: np.ndarray | None = None,
    square: bool = False,
) -> dict:
    """Stability, area, box and runs of (n, 256, 256) logits at crop resolution.

    The logits are upscaled a chunk at a time (64 MiB); per mask only counts, a box and
    its runs are kept. Masks with more run edges than low-res values keep their logits
    (``"dense"``, one block per batch), so each mask costs at most 256 KiB. With
    ``points_yx`` ((n, 2), each mask's prompting point in the crop), every mask is first
    reduced to its part under its point (``GridParams.clicked_component_only``); a
    reduced mask too speckled for runs keeps its whole logits (not seen in practice:
    one connected part). ``square``: the model's frame is the crop squeezed (SAM 2).
    """
    pieces: dict[str, list] = {"counts": [], "boxes": [], "edges": [], "n_edges": []}
    speckled = []
    budget = low_res.shape[-2] * low_res.shape[-1]  # int32 edges vs float32 logits
    chunks = iter_upscaled_logits(low_res, input_hw, crop_hw, image_size, square=square)
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


class GridProposer:
    """SAM's everything mode: a grid of point prompts (``mode="grid"``, every model)."""

    name = "grid"
    description = "SAM's grid of point prompts (points per side, crops)"
    params_type = GridParams
    filters = MappingProxyType(
        {
            "pred_iou_thresh": "pred IoU thresh",
            "stability_score_thresh": "stability thresh",
            "box_nms_thresh": "box NMS thresh",
            "crop_nms_thresh": "crop NMS thresh",
            "min_mask_region_area": "min region area",
        }
    )

    def propose(
        self, plane: PlaneContext, params: GridParams
    ) -> Generator[Progress, None, GridCandidates]:
        """:func:`decode_grid` on the plane; crops are embedded and not kept."""
        return (yield from decode_grid(plane.predictor, plane.rgb, params, plane.embedding))


def everything_params(**params) -> tuple[GridParams, FilterParams]:
    """The grid's keyword arguments split into the two phases' parameters.

    Raises
    ------
    InputError
        On an unknown name or an invalid value.
    """
    from .modes import split_params

    return split_params(GridProposer(), (GridProposer(),), **params)


def segment_everything(
    predictor: Predictor,
    rgb_uint8: np.ndarray,
    embedding: Embedding | None = None,
    on_progress: Callable[[Progress], object] | None = None,
    **params,
) -> EverythingResult:
    """SAM's everything mode on one plane, both phases, without a session.

    Parameters
    ----------
    predictor, rgb_uint8, embedding
        As in :func:`decode_grid`.
    on_progress : callable, optional
        Called with every :class:`Progress` report.
    **params
        :class:`GridParams` and :class:`~.selection.FilterParams` fields (SAM's names
        and defaults).
    """
    grid, filters = everything_params(**params)
    candidates = drain(decode_grid(predictor, rgb_uint8, grid, embedding), on_progress)
    return candidates.select(filters)
