"""Objects through z: one click per nucleus on generated 3D stacks, propagated.

For each of ``--volumes`` generated stacks (``core.synthetic.volume``, seeds that
training never uses; random radius 6-14 px, slice thickness 1.5-4 px, dtype,
brightness and noise), every nucleus that is at least 3 slices deep and does not touch
the stack's top or bottom is clicked once, at the most interior pixel of its middle
slice (``--click-at 0.25``: a quarter of its slices from its top), and all of them
are propagated together (``SegAny.open_volume``). Reported:
the mean 3D IoU of each nucleus with its truth, the IoU on the clicked slice alone,
the share of the truth's slices the object reaches and of its slices that are truth
(over-run into neighbours), and seconds per propagated slice.

Usage::

    PYTHONPATH=src python -m training.evaluate_volume --volumes 4 --model builtin
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy import ndimage

from napari_segany import SegAny
from napari_segany.core.synthetic.volume import generate_volume

SEED_BASE = 7_300_000  # generated volumes only (the 2D training seeds are elsewhere)


def nucleus_clicks(
    truth: np.ndarray, max_objects: int, at: float = 0.5
) -> list[tuple[int, int, list]]:
    """(label, slice, [[y, x]]) of the first ``max_objects`` nuclei to click (see the
    module docstring), each found in its own bounding box."""
    clicks = []
    for label, box in enumerate(ndimage.find_objects(truth), start=1):
        if len(clicks) == max_objects:
            break
        if box is None or box[0].stop - box[0].start < 3:
            continue
        if box[0].start == 0 or box[0].stop == truth.shape[0]:
            continue
        obj = truth[box] == label
        slices = np.flatnonzero(obj.any((1, 2)))
        local = int(slices[int(at * (len(slices) - 1) + 0.5)])
        depth = ndimage.distance_transform_edt(np.pad(obj[local], 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        point = [int(y + box[1].start), int(x + box[2].start)]
        clicks.append((label, local + box[0].start, [point]))
    return clicks


def evaluate(session: SegAny, seed: int, shape, max_objects: int, at: float = 0.5) -> dict:
    scene = generate_volume(np.random.default_rng(SEED_BASE + seed), shape)
    truth = scene.labels
    volume = session.open_volume(scene.image)
    clicks = nucleus_clicks(truth, max_objects, at)
    slice_ious = []
    for obj_id, (label, index, point) in enumerate(clicks, start=1):
        result = volume.prompt(obj_id, index, points_yx=point, labels=[1])
        wanted = truth[index] == label
        slice_ious.append(
            float((result.masks[0] & wanted).sum() / (result.masks[0] | wanted).sum())
        )
    start = time.perf_counter()
    steps = [0]
    labels = volume.propagate(on_progress=lambda report: steps.__setitem__(0, report.total))
    seconds = time.perf_counter() - start
    ious, reach, precision = [], [], []
    for obj_id, (label, _, _) in enumerate(clicks, start=1):
        found, wanted = labels == obj_id, truth == label
        ious.append(float((found & wanted).sum() / (found | wanted).sum()))
        found_z, wanted_z = found.any((1, 2)), wanted.any((1, 2))
        reach.append(float((found_z & wanted_z).sum() / wanted_z.sum()))
        precision.append(float((found_z & wanted_z).sum() / max(found_z.sum(), 1)))
    walked = int(sum((labels > 0).any((1, 2))))
    return {
        "seed": seed,
        "radius": round(scene.radius, 2),
        "z_step": round(scene.z_step, 2),
        "objects": len(clicks),
        "iou_3d": float(np.mean(ious)),
        "iou_clicked_slice": float(np.mean(slice_ious)),
        "slices_reached": float(np.mean(reach)),
        "slices_correct": float(np.mean(precision)),
        "seconds": round(seconds, 1),
        "slices_with_objects": walked,
        "all_iou_3d": [round(v, 3) for v in ious],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument(
        "--click-at", type=float, default=0.5, help="where along its slices a nucleus is clicked"
    )
    parser.add_argument("--shape", type=int, nargs=3, default=(24, 128, 128))
    parser.add_argument("--objects", type=int, default=12, help="clicked nuclei per volume")
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    session = SegAny(args.model, device="cpu")
    seeds = range(args.first_seed, args.first_seed + args.volumes)
    rows = [
        evaluate(session, seed, tuple(args.shape), args.objects, args.click_at) for seed in seeds
    ]
    ious = [v for row in rows for v in row["all_iou_3d"]]
    summary = {
        "model": args.model,
        "volumes": args.volumes,
        "objects": len(ious),
        "mean_iou_3d": float(np.mean(ious)),
        "mean_iou_clicked_slice": float(np.mean([r["iou_clicked_slice"] for r in rows])),
        "mean_slices_reached": float(np.mean([r["slices_reached"] for r in rows])),
        "mean_slices_correct": float(np.mean([r["slices_correct"] for r in rows])),
        "per_volume": rows,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
