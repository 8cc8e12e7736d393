"""Choose when the foreground head's objects are found on zoomed tiles (``core.seeds``).

::

    PYTHONPATH=src .venv/bin/python -m training.calibrate_zoom

On generated calibration scenes (those of ``calibrate_everything``, not the held-out
set), the head's objects are found at every fixed zoom (1 to ``objects.MAX_ZOOM`` tiles
per side, :func:`napari_segany.core.objects.find_objects`); each scene's everything-mode
F1 at IoU 0.5 and object IoU (the mean IoU of each true object with the found object
covering most of it) are kept with the whole plane's typical object radius
(:func:`~napari_segany.core.objects.typical_radius` at several percentiles). Then every
rule "zoom ``z`` where the radius is below ``r_z``" of the sweep is scored without the
model, ranked by mean F1 plus object IoU, and the best rows are printed with the mean
of each fixed zoom and of the best zoom per scene (an oracle no rule can beat).
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
from napari_segany.core.image import to_model_rgb
from napari_segany.core.model.foreground_head import FOREGROUND
from napari_segany.models.builtin import objects

from .calibrate_everything import calibration_scenes, object_iou
from .evaluate_builtin import matching_f1

PERCENTILES = (50, 75, 90, 95)
RADIUS_2 = (5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0)  # zoom 2 below this radius
RADIUS_3 = (0.0, 3.0, 4.0, 5.0, 6.0)  # zoom 3 below this (0: never)
RADIUS_4 = (0.0, 2.0, 3.0, 4.0)  # zoom 4 below this (0: never)


def measure(session: SegAny, n_images: int) -> list[dict]:
    """Per scene: radii, and (F1, object IoU) at each fixed zoom."""
    model, rows = session.predictor.model, []
    for scene in calibration_scenes(n_images):
        rgb = to_model_rgb(scene.image)
        embedding = session.predictor.embed(rgb)
        logits = objects.head_logits(model, embedding)
        row = {"kind": scene.kind, "objects": int(scene.labels.max())}
        scale = objects.frame_scale(embedding)
        row["radius"] = {
            q: objects.typical_radius(logits[FOREGROUND], scale, q) for q in PERCENTILES
        }
        for zoom in range(1, objects.MAX_ZOOM + 1):
            found = objects.find_objects(model, embedding, rgb, session.predictor.embed, zoom)
            f1 = matching_f1(scene.labels, found.labels)[0]
            row[zoom] = (f1, object_iou(scene.labels, found.labels))
        rows.append(row)
    return rows


def rule_score(rows: list[dict], percentile: int, steps: tuple) -> tuple[float, float]:
    """Mean (F1, object IoU) of the rule ``steps`` = ((radius, zoom), ...), largest zoom
    first, on the radius at ``percentile``."""
    chosen = []
    for row in rows:
        radius, zoom = row["radius"][percentile], 1
        if radius > 0:
            zoom = next((z for below, z in steps if radius < below), 1)
        chosen.append(row[zoom])
    return tuple(float(v) for v in np.mean(chosen, axis=0))


def sweep(rows: list[dict]) -> list[dict]:
    table = []
    for percentile, r2, r3, r4 in itertools.product(PERCENTILES, RADIUS_2, RADIUS_3, RADIUS_4):
        if not r4 <= r3 <= r2:
            continue
        steps = tuple((r, z) for r, z in ((r4, 4), (r3, 3), (r2, 2)) if r > 0)
        f1, overlap = rule_score(rows, percentile, steps)
        table.append(
            {
                "percentile": percentile,
                "zoom_below": {4: r4, 3: r3, 2: r2},
                "f1": round(f1, 4),
                "object_iou": round(overlap, 4),
            }
        )
    return sorted(table, key=lambda row: -(row["f1"] + row["object_iou"]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    session = SegAny(args.model, device="cpu", precision="fp32")
    started = time.perf_counter()
    rows = measure(session, args.images)
    zooms = range(1, objects.MAX_ZOOM + 1)
    fixed = {z: [round(v, 4) for v in np.mean([row[z] for row in rows], axis=0)] for z in zooms}
    oracle = np.mean([max(row[z][0] + row[z][1] for z in zooms) / 2 for row in rows])
    shipped = tuple((below, zoom) for below, zoom in objects.ZOOM_STEPS)
    result = {
        "model": args.model,
        "images": args.images,
        "seconds": round(time.perf_counter() - started, 1),
        "fixed_zoom_f1_object_iou": fixed,
        "oracle_mean_of_f1_and_object_iou": round(float(oracle), 4),
        "shipped_rule": [round(v, 4) for v in rule_score(rows, objects.ZOOM_PERCENTILE, shipped)],
        "top": sweep(rows)[: args.top],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
