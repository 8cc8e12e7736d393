"""Measure a model on held-out generated images through the public API (``SegAny``).

The targets of the model card (docs/models.md)::

    PYTHONPATH=src .venv/bin/python -m training.evaluate_builtin            # builtin
    PYTHONPATH=src .venv/bin/python -m training.evaluate_builtin --weights training/out/builtin.pt

(``--weights``: a trained file with the built-in model's rules; ``--model FILE`` would
run it with none -- no size limit, no refiners -- as any checkpoint file.)

- click: one positive click at each object's most interior pixel (maximum of the
  distance to the background), best-scored of the three candidates, as the session's
  refiners answer it (the model's: ``--refine auto``; ``--refine none`` for the
  decoder alone, or a list such as ``clip_to_box,clicked_parts``): mean IoU (and, as
  a diagnosis, the best of the three: ``click_oracle_iou``);
- box: the object's exact bounding box, one mask, as the refiners answer it: mean IoU;
- everything: ``segment_everything()`` with the session's defaults (for the built-in
  model its calibrated thresholds and the clicked-part rule,
  ``SegAny.everything.defaults``; SAM's for other models): F1 at IoU 0.5 (a prediction
  matches a true object when IoU > 0.5; such matches are one-to-one);
  ``--points-per-side`` / ``--pred-iou-thresh`` / ``--stability-score-thresh`` /
  ``--box-nms-thresh`` override them, ``--sam-everything`` runs SAM's defaults (32 x 32
  points, 0.88 / 0.95 / 0.7, whole masks) and ``--no-everything`` skips it;
- ``by_radius``: click and box IoU per object radius in the 512 px model frame;
- ``by_edge``: click and box IoU of the objects cut by the plane's edge and of the
  others (a crop cuts many: the ``tiny`` case);
- ``box_errors``: where the box masks' wrong pixels lie (:func:`box_error_pixels`):
  the shares of false positives outside the box and on other objects, the shares of
  false positives and negatives within :data:`RIM_PX` px of the object's outline, and
  the mean box IoU were those rim errors right (what sharper rims alone could give);
- ``--contrast napari``: the intensities the widget passes, napari's default contrast
  limits (uint8: 0-255, other types: the data range) instead of the API's robust
  percentiles;
- ``--case``: the held-out scenes as another input (``training/input_cases.py``): the
  stain in the red or green channel of an RGB image, as channel 0 of a two-channel
  image, or a tiny 61 x 57 crop; ``grey`` (the default) is the scenes as generated.

Held-out scenes are drawn from seeds the training never uses (training draws from
``seed * 1_000_003 + i`` with small i; these from ``EVAL_SEED + i``), at several image
sizes, so that the model-frame resize is part of the test.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from napari_segany.api import SegAny
from napari_segany.core.synthetic import generate_scene, interior_point_yx
from napari_segany.models.builtin import objects
from napari_segany.models.builtin.refiner import SnapToObjects

from .input_cases import INPUT_CASES, as_case
from .sessions import evaluation_session

EVAL_SEED = 987_654_321
SIZES_HW = ((256, 256), (512, 512), (384, 640), (768, 768))
MIN_AREA = 12  # objects smaller than this (px) are not prompted
MODEL_FRAME = 512  # the built-in model's input side, for the radius buckets


RADIUS_BUCKETS = (0.0, 4.0, 8.0, 16.0, np.inf)  # object radius in the 512 px model frame
SAM_EVERYTHING = {  # SAM's automatic mask generator's defaults, whole masks
    "mode": "grid",
    "points_per_side": 32,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95,
    "box_nms_thresh": 0.7,
    "clicked_component_only": False,
}
# everything-mode parameters with a flag of their own (None: the session's default)
EVERYTHING_FLAGS = (
    "mode",
    "points_per_side",
    "pred_iou_thresh",
    "stability_score_thresh",
    "box_nms_thresh",
    "head_views",
)
RIM_PX = 2  # errors this close to the true outline (image pixels) count as rim errors


@dataclass
class Scores:
    click_iou: float
    click_oracle_iou: float
    box_iou: float
    by_radius: dict
    by_edge: dict
    box_errors: dict
    everything_f1: float
    everything_precision: float
    everything_recall: float
    n_images: int
    n_objects: int
    seconds: float


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def best_overlap_iou(found: np.ndarray, truth: np.ndarray) -> float:
    """IoU of the true object ``truth`` ((H, W) bool) with the object of the label image
    ``found`` that covers most of it (0 if none does)."""
    under = found[truth]
    under = under[under > 0]
    return iou(found == np.bincount(under).argmax(), truth) if under.size else 0.0


def best_overlap_ious(truth: np.ndarray, found: np.ndarray, min_area: int = 0) -> np.ndarray:
    """:func:`best_overlap_iou` of every true object of at least ``min_area`` pixels of
    the label image ``truth`` (in label order), from one table of overlaps: fast on
    scenes of hundreds of objects."""
    truth, found = truth.ravel().astype(np.int64), found.ravel().astype(np.int64)
    true_area = np.bincount(truth)
    found_area = np.bincount(found)
    width = int(found.max()) + 1 if found.size else 1
    both = (truth > 0) & (found > 0)
    pairs, overlap = np.unique(truth[both] * width + found[both], return_counts=True)
    pair_truth, pair_found = pairs // width, pairs % width
    # per true object the pair of largest overlap, the smallest id among equals
    order = np.lexsort((pair_found, -overlap, pair_truth))
    first = order[np.unique(pair_truth[order], return_index=True)[1]]
    best = np.zeros(true_area.size)
    t, f, inter = pair_truth[first], pair_found[first], overlap[first]
    best[t] = inter / (true_area[t] + found_area[f] - inter)
    labels = np.flatnonzero(true_area)
    labels = labels[(labels > 0) & (true_area[labels] >= max(min_area, 1))]
    return best[labels]


def matching_f1(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    """(F1, precision, recall) at IoU > 0.5 between two label images."""
    true_ids = np.unique(truth)
    true_ids = true_ids[true_ids > 0]
    pred_ids = np.unique(predicted)
    pred_ids = pred_ids[pred_ids > 0]
    if not len(true_ids) and not len(pred_ids):
        return 1.0, 1.0, 1.0
    pairs = np.stack([truth.ravel(), predicted.ravel()], axis=1)
    both = pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0)]
    found, counts = np.unique(both, axis=0, return_counts=True)
    true_area = dict(zip(*np.unique(truth[truth > 0], return_counts=True)))
    pred_area = dict(zip(*np.unique(predicted[predicted > 0], return_counts=True)))
    matches = 0
    for (t, p), inter in zip(found, counts):
        if inter / (true_area[t] + pred_area[p] - inter) > 0.5:
            matches += 1
    precision = matches / max(len(pred_ids), 1)
    recall = matches / max(len(true_ids), 1)
    f1 = 2 * matches / max(len(true_ids) + len(pred_ids), 1)
    return f1, precision, recall


def box_error_pixels(
    predicted: np.ndarray, mask: np.ndarray, labels: np.ndarray, box_yxyx
) -> dict[str, int]:
    """Count where a box prompt's mask is wrong.

    Parameters
    ----------
    predicted, mask : (H, W) bool
        The mask and the prompted object's truth.
    labels : (H, W) int
        All objects (to tell a leak into a neighbour from one into background).
    box_yxyx : sequence of 4 int
        The prompt, inclusive pixel bounds.

    Returns
    -------
    dict
        Pixel counts: ``fp``, ``fp_outside_box``, ``fp_on_objects``, ``fp_rim`` (within
        :data:`RIM_PX` px outside the outline), ``fn``, ``fn_rim`` (within it inside),
        ``inter``, ``union``.
    """
    y0, x0, y1, x1 = (int(v) for v in box_yxyx)
    false_pos, false_neg = predicted & ~mask, mask & ~predicted
    inside_box = np.zeros_like(mask)
    inside_box[y0 : y1 + 1, x0 : x1 + 1] = True
    lo_y, lo_x = max(y0 - RIM_PX - 1, 0), max(x0 - RIM_PX - 1, 0)
    near = np.s_[lo_y : y1 + RIM_PX + 2, lo_x : x1 + RIM_PX + 2]  # the rim lies in here
    outside = ndimage.distance_transform_edt(~mask[near]) <= RIM_PX
    inside = ndimage.distance_transform_edt(np.pad(mask[near], 1))[1:-1, 1:-1] <= RIM_PX
    return {
        "fp": int(false_pos.sum()),
        "fp_outside_box": int((false_pos & ~inside_box).sum()),
        "fp_on_objects": int((false_pos & (labels > 0)).sum()),
        "fp_rim": int((false_pos[near] & outside).sum()),
        "fn": int(false_neg.sum()),
        "fn_rim": int((false_neg[near] & inside).sum()),
        "inter": int((predicted & mask).sum()),
        "union": int((predicted | mask).sum()),
    }


def _box_errors(counts: list[dict[str, int]]) -> dict[str, float]:
    """Shares of the summed error pixels, and the mean IoU with rim errors forgiven."""
    total = {key: sum(c[key] for c in counts) for key in counts[0]}
    forgiven = [(c["inter"] + c["fn_rim"]) / max(c["union"] - c["fp_rim"], 1) for c in counts]
    fp, fn = max(total["fp"], 1), max(total["fn"], 1)
    return {
        "fp_per_fn": round(total["fp"] / fn, 3),
        "fp_outside_box_share": round(total["fp_outside_box"] / fp, 3),
        "fp_on_objects_share": round(total["fp_on_objects"] / fp, 3),
        "fp_rim_share": round(total["fp_rim"] / fp, 3),
        "fn_rim_share": round(total["fn_rim"] / fn, 3),
        "box_iou_rims_right": round(float(np.mean(forgiven)), 3),
    }


def _by_radius(radii: np.ndarray, clicks: np.ndarray, boxes: np.ndarray) -> dict:
    """Click and box IoU per bucket of object radius in the model frame."""
    table = {}
    for low, high in zip(RADIUS_BUCKETS[:-1], RADIUS_BUCKETS[1:]):
        inside = (radii >= low) & (radii < high)
        if inside.any():
            table[f"r {low:g}-{high:g} px"] = {
                "objects": int(inside.sum()),
                "click_iou": round(float(clicks[inside].mean()), 3),
                "box_iou": round(float(boxes[inside].mean()), 3),
            }
    return table


def _edge_pixels(labels: np.ndarray) -> np.ndarray:
    """The label values on the outermost rows and columns of (H, W) ``labels``."""
    return np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])


def _by_edge(at_edge: np.ndarray, clicks: np.ndarray, boxes: np.ndarray) -> dict:
    """Click and box IoU of the objects cut by the plane's edge and of the others."""
    groups = {"cut by the edge": at_edge, "inside": ~at_edge}
    return {
        name: {
            "objects": int(chosen.sum()),
            "click_iou": round(float(clicks[chosen].mean()), 3),
            "box_iou": round(float(boxes[chosen].mean()), 3),
        }
        for name, chosen in groups.items()
        if chosen.any()
    }


def napari_default_limits(image: np.ndarray) -> tuple[float, float] | None:
    """The contrast limits a new napari image layer gets, as the widget passes them:
    none for 8-bit RGB (taken as is), (0, 255) for uint8, else the data range."""
    if image.dtype == np.uint8:
        return None if image.ndim == 3 else (0.0, 255.0)
    return float(image.min()), float(image.max())


def held_out_scene(index: int, kind: str | None = None):
    """Held-out scene number ``index`` as generated (the ``grey`` case)."""
    rng = np.random.default_rng(EVAL_SEED + index)
    return generate_scene(rng, SIZES_HW[index % len(SIZES_HW)], kind=kind)


def held_out_scenes(count: int, kind: str | None = None, case: str = "grey"):
    for index in range(count):
        yield as_case(held_out_scene(index, kind), case, index)


def evaluate(
    session: SegAny,
    n_images: int,
    max_objects: int,
    kind: str | None,
    everything: dict | None,
    contrast: str = "robust",
    case: str = "grey",
) -> Scores:
    started = time.perf_counter()
    clicks, oracle, boxes, radii, f1s, precisions, recalls = [], [], [], [], [], [], []
    errors, at_edge = [], []
    rng = np.random.default_rng(0)
    for scene in held_out_scenes(n_images, kind, case):
        limits = napari_default_limits(scene.image) if contrast == "napari" else None
        session.set_image(scene.image, contrast_limits=limits)
        to_frame = max(session.current.embedding.input_hw) / max(scene.labels.shape)
        ids = [i for i in np.unique(scene.labels) if i and (scene.labels == i).sum() >= MIN_AREA]
        edge_ids = set(np.unique(_edge_pixels(scene.labels)).tolist())
        for object_id in rng.permutation(ids)[:max_objects]:
            mask = scene.labels == object_id
            click = session.segment(points_yx=[interior_point_yx(mask)], labels=[1])
            candidates = [iou(candidate, mask) for candidate in click.masks]
            clicks.append(candidates[int(np.argmax(click.scores))])
            oracle.append(max(candidates))
            ys, xs = np.nonzero(mask)
            box_yxyx = [ys.min(), xs.min(), ys.max(), xs.max()]
            box = session.segment(box_yxyx=box_yxyx, multimask=False)
            boxes.append(iou(box.masks[0], mask))
            errors.append(box_error_pixels(box.masks[0], mask, scene.labels, box_yxyx))
            radii.append(np.sqrt(mask.sum() / np.pi) * to_frame)
            at_edge.append(int(object_id) in edge_ids)
        if everything is None:
            continue
        result = session.segment_everything(**everything)
        f1, precision, recall = matching_f1(scene.labels, result.labels)
        f1s.append(f1)
        precisions.append(precision)
        recalls.append(recall)
    return Scores(
        float(np.mean(clicks)),
        float(np.mean(oracle)),
        float(np.mean(boxes)),
        _by_radius(np.array(radii), np.array(clicks), np.array(boxes)),
        _by_edge(np.array(at_edge, dtype=bool), np.array(clicks), np.array(boxes)),
        _box_errors(errors),
        float(np.mean(f1s)) if f1s else -1.0,
        float(np.mean(precisions)) if f1s else -1.0,
        float(np.mean(recalls)) if f1s else -1.0,
        n_images,
        len(clicks),
        round(time.perf_counter() - started, 1),
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default="builtin", help="registry name or checkpoint file")
    which.add_argument(
        "--weights",
        default=None,
        help="a model file run with the built-in model's rules (its plug-in): tuned weights",
    )
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--objects", type=int, default=25, help="prompted objects per image")
    parser.add_argument("--kind", choices=["nuclei", "cells", "cells_rgb"], default=None)
    parser.add_argument(
        "--case",
        choices=INPUT_CASES,
        default="grey",
        help="the scenes as another input: stain in red or green, two channels, tiny crop",
    )
    parser.add_argument(
        "--contrast",
        choices=["robust", "napari"],
        default="robust",
        help="robust percentiles (the API's default) or napari's default contrast limits",
    )
    parser.add_argument("--mode", default=None, help="everything mode (default: the model's)")
    parser.add_argument("--points-per-side", type=int, default=None, help="default: model's")
    parser.add_argument("--pred-iou-thresh", type=float, default=None, help="default: model's")
    parser.add_argument("--stability-score-thresh", type=float, default=None)
    parser.add_argument("--box-nms-thresh", type=float, default=None)
    parser.add_argument(
        "--head-views",
        type=int,
        choices=objects.VIEWS,
        default=None,
        help="views the foreground head is averaged over, for prompts and everything mode "
        "(default: the session's, 2)",
    )
    parser.add_argument(
        "--sam-everything",
        action="store_true",
        help="everything mode with SAM's defaults instead of the model's",
    )
    parser.add_argument(
        "--no-everything", action="store_true", help="prompts only (fast; F1 reported as -1)"
    )
    parser.add_argument("--device", default="cpu", help="e.g. 'cuda' (fp32 either way)")
    parser.add_argument(
        "--refine",
        default="auto",
        help="the session's prompt refiners: auto (the model's; builtin: clip_to_box, "
        "clicked_parts, snap_to_objects), none, or names separated by commas",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    refine = args.refine if args.refine in ("auto", "none") else args.refine.split(",")
    session = evaluation_session(args.model, args.weights, args.device, refine)
    if args.head_views is not None:  # the built-in model's snapping refiner, other views
        session.refiners = [
            SnapToObjects(views=args.head_views) if r.name == SnapToObjects.name else r
            for r in session.refiners
        ]
    everything = None
    if not args.no_everything:
        everything = dict(SAM_EVERYTHING) if args.sam_everything else {}
        for name in EVERYTHING_FLAGS:
            if getattr(args, name) is not None:
                everything[name] = getattr(args, name)
        everything = session.everything.merged(**everything)
    scores = evaluate(
        session, args.images, args.objects, args.kind, everything, args.contrast, args.case
    )
    report = {
        "model": args.model,
        "kind": args.kind or "mixed",
        "case": args.case,
        "contrast": args.contrast,
        "device": args.device,
        "refiners": [refiner.name for refiner in session.refiners],
        "head_views": args.head_views,
        "everything": everything,
    }
    print(json.dumps({**report, **asdict(scores)}, indent=2))


if __name__ == "__main__":
    main()
