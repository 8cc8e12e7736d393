"""Everything mode's candidates of one plane (phase 1's output, before any threshold).

Every proposer (SAM's grid, a model's own) returns :class:`GridCandidates`; phase 2
(:mod:`.selection`) picks objects among them without the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..mask_ops import boxes_near_crop_edge
from ..mask_runs import MaskRuns
from .resolution import Resolution
from .selection import EverythingResult, FilterParams, select


@dataclass
class GridCandidates:
    """Every mask decoded from the grid (phase 1), before any threshold.

    Arrays have one entry per mask, in decoding order (crop, point, candidate).

    Attributes
    ----------
    image_hw : (int, int)
    params : dataclass
        The proposer's parameters (e.g. ``GridParams``).
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
    resolution : Resolution, optional
        How the pass saw the plane (set by the session); phase 2 then warns with
        ``SmallObjectsWarning`` when the objects were too small for it.
    """

    image_hw: tuple[int, int]
    params: Any
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
    resolution: Resolution | None = None

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


def assemble_candidates(image_hw: tuple[int, int], params: Any, parts: list) -> GridCandidates:
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


def labels_as_candidates(
    labels: np.ndarray,
    params: Any,
    predicted_iou: np.ndarray,
    stability_score: np.ndarray,
    points_xy: np.ndarray,
) -> GridCandidates:
    """The objects of a label image as candidates of the whole plane, one each, never
    overlapping: what a decoder-based proposer gives phase 2.

    Parameters
    ----------
    labels : numpy.ndarray, (H, W) int
        Objects 1..N, 0 background.
    params : dataclass
        The proposer's parameters.
    predicted_iou, stability_score : numpy.ndarray, (N,) float32
        The proposer's scores of each object (their meaning is the proposer's).
    points_xy : numpy.ndarray, (N, 2) float64
        A point of each object, (x, y).
    """
    height, width = labels.shape
    count = len(predicted_iou)
    edges, offsets = label_runs(labels, count)
    boxes = np.zeros((count, 4), np.int64)
    for index, box in enumerate(ndimage.find_objects(labels, count)):
        if box is not None:
            rows, cols = box
            boxes[index] = (cols.start, rows.start, cols.stop - 1, rows.stop - 1)
    result = GridCandidates((height, width), params)
    result.crops_xyxy = [(0, 0, width, height)]
    result.crop_index = np.zeros(count, np.int64)
    result.predicted_iou = np.asarray(predicted_iou, np.float32)
    result.stability_score = np.asarray(stability_score, np.float32)
    result.area = np.bincount(labels.reshape(-1), minlength=count + 1)[1 : count + 1]
    result.area = result.area.astype(np.int64)
    result.boxes_xyxy = boxes
    result.points_xy = np.asarray(points_xy, np.float64)
    result.near_crop_edge = np.zeros(count, bool)
    result.runs = [MaskRuns(edges, offsets, (height, width))]
    result.local_index = np.arange(count, dtype=np.int64)
    return result


def label_runs(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Run edges of every object of a label image (the format of ``MaskRuns``).

    Parameters
    ----------
    labels : numpy.ndarray, (H, W) int
        Objects 1..``count``, 0 background.
    count : int

    Returns
    -------
    edges : numpy.ndarray, (E,) int32
        Object by object, alternating run starts and exclusive ends (flat indices).
    offsets : numpy.ndarray, (count + 1,) int64
        Object ``k`` (label ``k + 1``) owns ``edges[offsets[k]:offsets[k + 1]]``.
    """
    flat = labels.reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], changes])
    ends = np.concatenate([changes, [flat.size]])
    values = flat[starts]
    inside = values > 0
    starts, ends, values = starts[inside], ends[inside], values[inside]
    order = np.argsort(values, kind="stable")  # by object, runs in flat order
    pairs = np.stack([starts[order], ends[order]], axis=1).reshape(-1).astype(np.int32)
    runs_per_object = np.bincount(values, minlength=count + 1)[1:]
    offsets = np.concatenate([[0], np.cumsum(2 * runs_per_object)]).astype(np.int64)
    return pairs, offsets
