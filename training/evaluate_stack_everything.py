"""Everything mode over generated 3D nuclei stacks, objects linked through z: 3D F1.

For each of ``--volumes`` generated stacks (``core.synthetic.volume``, the seeds of
``training.evaluate_volume``), ``SegAny.segment_everything_stack`` finds the nuclei
plane by plane and links them through z, by overlap and by propagation
(``link="propagation"``: each object carried onto the next plane by the model); the
3D label image is compared with the truth: F1, precision and recall of 3D objects
matched at IoU > 0.5, and the seconds of each run. Without linking every plane's
object is its own 3D object, which the F1 shows as the floor.

Usage::

    PYTHONPATH=src python -m training.evaluate_stack_everything --volumes 3
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from napari_segany import SegAny
from napari_segany.core.synthetic.volume import generate_volume
from training.evaluate_builtin import matching_f1
from training.evaluate_volume import SEED_BASE

LINKS = {"none": False, "overlap": "overlap", "propagation": "propagation"}


def evaluate(session: SegAny, seed: int, shape, links) -> dict:
    scene = generate_volume(np.random.default_rng(SEED_BASE + seed), shape)
    row = {"seed": seed, "radius": round(scene.radius, 2), "z_step": round(scene.z_step, 2)}
    row["nuclei"] = int(len(np.unique(scene.labels)) - 1)
    for name in links:
        start = time.perf_counter()
        result = session.segment_everything_stack(scene.image, link=LINKS[name])
        f1, precision, recall = matching_f1(scene.labels, result.labels)
        row[name] = {
            "f1": round(f1, 4),
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "objects": int(len(np.unique(result.labels)) - 1),
            "seconds": round(time.perf_counter() - start, 1),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--shape", type=int, nargs=3, default=(24, 128, 128))
    parser.add_argument("--links", nargs="+", default=list(LINKS), choices=list(LINKS))
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    session = SegAny(args.model, device="cpu")
    seeds = range(args.first_seed, args.first_seed + args.volumes)
    rows = [evaluate(session, seed, tuple(args.shape), args.links) for seed in seeds]
    summary = {
        "model": args.model,
        "volumes": args.volumes,
        "mean_f1": {name: float(np.mean([row[name]["f1"] for row in rows])) for name in args.links},
        "per_volume": rows,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
