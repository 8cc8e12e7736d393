"""Choose a model's everything-mode thresholds on generated calibration scenes.

::

    PYTHONPATH=src .venv/bin/python -m training.calibrate_everything --points-per-side 64

Decodes the grid once per scene (``--points-per-side``, the clicked-part rule on unless
``--whole-masks``), then applies every combination of ``pred_iou_thresh``,
``stability_score_thresh`` and ``box_nms_thresh`` of the sweep (the cheap phase, no
model) and reports the mean F1 at IoU 0.5 (``evaluate_builtin.matching_f1``) of each,
best first, with the decoding time per scene.

With ``--mode ais`` (models with a foreground head: the built-in model) the
objects come from the seeded watershed of ``core/objects.py`` instead; its seed
thresholds (foreground logit, border logit, minimum seed area), the extent of the
objects and ``pred_iou_thresh`` (there: an object's mean foreground probability) are
swept, and the rows are ranked by F1 plus ``object_iou`` (the mean IoU of each true
object with the found object covering most of it), since the same objects answer
snapped prompts (``SegAny.snap_to_objects``).

The scenes come from the held-out generator of ``evaluate_builtin`` (same sizes and
kinds) with other seeds (:data:`CALIBRATION_SEED`), so the thresholds chosen here are
then measured on images they were not chosen on (``evaluate_builtin``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import warnings

import numpy as np
import torch

from napari_segany.api import SegAny
from napari_segany.core.everything.grid import GridParams, decode_grid
from napari_segany.core.everything.selection import EmptyResultWarning, FilterParams
from napari_segany.core.image import to_model_rgb
from napari_segany.core.progress import drain
from napari_segany.core.synthetic import generate_scene
from napari_segany.models.builtin import objects, proposer

from .evaluate_builtin import MIN_AREA, SIZES_HW, best_overlap_ious, matching_f1

CALIBRATION_SEED = 123_456_789  # held-out scenes use evaluate_builtin.EVAL_SEED
PRED_IOU = (0.3, 0.35, 0.4, 0.45, 0.5)
STABILITY = (0.0, 0.85, 0.9)
BOX_NMS = (0.0, 0.02, 0.05, 0.1)
CROP_NMS = (0.02, 0.1, 0.7)  # swept only with crops (--crop-n-layers > 0)
SEED_FOREGROUND = (0.0, 0.5, 1.0)
SEED_BORDER = (-0.5, -1.0, -1.5, -2.0)
SEED_AREA = (2, 4, 8, 16)  # model-frame pixels
EXTENT = (-1.0, -0.5, 0.0, 0.5)
OBJECT_PROBABILITY = (0.0, 0.6)


def calibration_scenes(count: int):
    for index in range(count):
        rng = np.random.default_rng(CALIBRATION_SEED + index)
        yield generate_scene(rng, SIZES_HW[index % len(SIZES_HW)])


def sweep(
    session: SegAny, n_images: int, points_per_side: int, rule: bool, crops: dict | None = None
) -> dict:
    """Mean (F1, precision, recall) per threshold combination, and decoding seconds.

    ``crops``: ``crop_n_layers`` and ``crop_n_points_downscale_factor`` (then
    ``crop_nms_thresh`` is swept too).
    """
    crops = crops or {}
    crop_nms = CROP_NMS if crops.get("crop_n_layers", 0) else (0.7,)
    scores: dict[tuple, list] = {}
    seconds = []
    grid = GridParams(points_per_side=points_per_side, clicked_component_only=rule, **crops)
    for scene in calibration_scenes(n_images):
        session.set_image(scene.image)  # the embedding, as segment_everything() uses it
        started = time.perf_counter()
        rgb = to_model_rgb(scene.image)  # the plane as set_image converts it (crops)
        candidates = drain(decode_grid(session.predictor, rgb, grid, session.current.embedding))
        seconds.append(time.perf_counter() - started)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyResultWarning)
            for combination in itertools.product(PRED_IOU, STABILITY, BOX_NMS, crop_nms):
                filters = FilterParams(*combination)
                found = candidates.select(filters).labels
                scores.setdefault(combination, []).append(matching_f1(scene.labels, found))
    names = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh")
    table = _table(scores, names, ("f1", "precision", "recall"))
    table.sort(key=lambda row: -row["f1"])
    return {"decode_seconds_mean": round(float(np.mean(seconds)), 1), "table": table}


def _table(scores: dict[tuple, list], names: tuple, metrics: tuple) -> list[dict]:
    """One row per swept combination: its values under ``names`` and the mean over
    scenes of each metric (4 decimals)."""
    return [
        {
            **dict(zip(names, combination)),
            **dict(zip(metrics, np.round(np.mean(values, axis=0), 4).tolist())),
        }
        for combination, values in scores.items()
    ]


def object_iou(truth: np.ndarray, found: np.ndarray) -> float:
    """Mean over true objects (of at least ``MIN_AREA`` px) of the IoU with the found
    object that covers most of them (0 if none): how well the found objects fit."""
    scores = best_overlap_ious(truth, found, MIN_AREA)
    return float(np.mean(scores)) if scores.size else 1.0


def sweep_foreground(session: SegAny, n_images: int, zoom: int = objects.AUTO_ZOOM) -> dict:
    """Mean (F1, precision, recall) per seed-threshold combination of
    ``mode="ais"`` (objects found at ``zoom``, 0: automatic), and the
    head's seconds per scene."""
    scores: dict[tuple, list] = {}
    seconds = []
    for scene in calibration_scenes(n_images):
        started = time.perf_counter()
        session.set_image(scene.image)
        rgb, embed = to_model_rgb(scene.image), session.predictor.embed
        model = session.predictor.model
        logits, used = objects.plane_logits(model, session.current.embedding, rgb, embed, zoom)
        seconds.append(time.perf_counter() - started)
        frame = session.current.embedding.input_hw
        scale = scene.labels.size / (frame[0] * frame[1] * used * used)
        for fg_logit, border_logit, area, extent in itertools.product(
            SEED_FOREGROUND, SEED_BORDER, SEED_AREA, EXTENT
        ):
            labels, found = objects.seeded_objects(
                logits[0], logits[1], max(1, round(area * scale)), fg_logit, border_logit, extent
            )
            probability, _ = proposer.object_scores(logits[0], labels, len(found), 1.0)
            for threshold in OBJECT_PROBABILITY:
                keep = np.concatenate([[False], probability > threshold])
                kept = np.where(keep[labels], labels, 0)
                score = (*matching_f1(scene.labels, kept), object_iou(scene.labels, kept))
                key = (fg_logit, border_logit, area, extent, threshold)
                scores.setdefault(key, []).append(score)
    names = (
        "seed_foreground_logit",
        "seed_border_logit",
        "min_seed_area",
        "extent_logit",
        "pred_iou_thresh",
    )
    table = _table(scores, names, ("f1", "precision", "recall", "object_iou"))
    # the objects serve everything mode (F1) and snapped prompts (how well they fit)
    table.sort(key=lambda row: -(row["f1"] + row["object_iou"]))
    return {"head_seconds_mean": round(float(np.mean(seconds)), 2), "table": table}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--points-per-side", type=int, default=64)
    parser.add_argument("--mode", choices=("grid", "ais"), default="grid")
    parser.add_argument("--whole-masks", action="store_true", help="clicked-part rule off")
    parser.add_argument(
        "--head-zoom", type=int, default=0, help="ais: tiles per side (0: automatic)"
    )
    parser.add_argument("--crop-n-layers", type=int, default=0)
    parser.add_argument("--crop-n-points-downscale-factor", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--top", type=int, default=10, help="rows of the table printed")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    session = SegAny(args.model, device="cpu", precision="fp32")
    crops = {
        "crop_n_layers": args.crop_n_layers,
        "crop_n_points_downscale_factor": args.crop_n_points_downscale_factor,
    }
    settings = {"model": args.model, "images": args.images}
    if args.mode == "ais":
        result = sweep_foreground(session, args.images, args.head_zoom)
        settings["mode"] = "ais"
        settings["head_zoom"] = args.head_zoom
    else:
        result = sweep(session, args.images, args.points_per_side, not args.whole_masks, crops)
        settings["points_per_side"] = args.points_per_side
        settings["clicked_component_only"] = not args.whole_masks
        settings.update(crops)
    settings["threads"] = torch.get_num_threads()
    result["table"] = result["table"][: args.top]
    print(json.dumps({**settings, **result}, indent=2))


if __name__ == "__main__":
    main()
