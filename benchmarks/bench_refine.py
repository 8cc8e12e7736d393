"""Refinement of degraded labels (``SegAny.refine_labels``) with the built-in model.

    cd benchmarks && ../.venv/bin/python bench_refine.py [--images 12] [--seed 0] [--split]
        [--side 256] [--tiling auto|none]

On generated nuclei scenes (256 x 256, nucleus radius 8 to 20 px), half of the objects
of each scene are degraded in one way -- eroded by 2-3 px, dilated by 2-3 px (into
background only), shifted by 3-4 px, or merged with a touching neighbour -- the rest
are left exact; every object is then refined. Per degradation the table gives the mean
IoU with truth of the degraded objects before and after, their count, the fraction
accepted, and the fraction of exact objects left pixel for pixel unchanged. A merged
object's truth is the nucleus it overlaps most; ``covered`` is the mean best IoU of
the two merged nuclei with any output object (the one a merged object drops counts 0
unless ``--split`` gives it an id). ``--side 1100`` makes planes over twice the
built-in model's frame: with ``--tiling auto`` (the default) they are refined window by
window, with ``--tiling none`` in one pass, shrunk into the frame.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import ndimage

from _common import ROOT  # noqa: F401  (puts src/ on the path)
from napari_segany import SegAny
from napari_segany.core.synthetic import generate_scene

KINDS = ("erode", "dilate", "shift", "merge")


def degrade(truth: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Degrade about half of the objects of ``truth`` one way.

    Returns
    -------
    degraded : numpy.ndarray, (H, W) same dtype
    changed : list of int
        The degraded ids (for ``"merge"``, the id that absorbed its neighbour).
    """
    labels = truth.copy()
    ids = [int(v) for v in np.unique(truth) if v != 0]
    chosen = [i for i in ids if rng.random() < 0.5]
    if kind == "merge":
        return _merge_pairs(labels, chosen)
    changed = []
    for obj_id in chosen:
        own = labels == obj_id
        if kind == "erode":
            new = ndimage.binary_erosion(own, iterations=int(rng.integers(2, 4)))
        elif kind == "dilate":
            grown = ndimage.binary_dilation(own, iterations=int(rng.integers(2, 4)))
            new = own | (grown & (labels == 0))
        else:
            angle, step = rng.uniform(0, 2 * np.pi), rng.uniform(3, 4)
            shift = (int(round(step * np.sin(angle))), int(round(step * np.cos(angle))))
            new = ndimage.shift(own, shift, order=0) & ((labels == 0) | own)
        if new.sum() < 20:  # too small to stay an object
            continue
        labels[own] = 0
        labels[new] = obj_id
        changed.append(obj_id)
    return labels, changed


def _merge_pairs(labels: np.ndarray, chosen: list) -> tuple[np.ndarray, list]:
    """Merge each chosen object with one touching neighbour (each object in one pair)."""
    used, changed = set(), []
    for obj_id in chosen:
        if obj_id in used:
            continue
        ring = ndimage.binary_dilation(labels == obj_id, iterations=1)
        near = [int(v) for v in np.unique(labels[ring]) if v not in (0, obj_id) and v not in used]
        if not near:
            continue
        labels[labels == near[0]] = obj_id
        used.update({obj_id, near[0]})
        changed.append(obj_id)
    return labels, changed


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def score_scene(truth, degraded, refined, changed, kind) -> dict:
    """Per-scene sums: IoU before/after of the degraded objects, exact unchanged."""
    before, after, covered = [], [], []
    for obj_id in changed:
        parts = [int(v) for v in np.unique(truth[degraded == obj_id]) if v != 0]
        if kind != "merge":
            parts = [obj_id]
        out = refined == obj_id
        best = max(parts, key=lambda p: np.count_nonzero(out & (truth == p)))
        before.append(iou(degraded == obj_id, truth == best))
        after.append(iou(out, truth == best))
        for part in parts:
            hits = [int(v) for v in np.unique(refined[truth == part]) if v != 0]
            covered.append(max([iou(refined == h, truth == part) for h in hits], default=0.0))
    exact = [int(v) for v in np.unique(degraded) if v != 0 and v not in changed]
    same = [np.array_equal(degraded == i, refined == i) for i in exact]
    return {"before": before, "after": after, "covered": covered, "same": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=12, help="scenes per degradation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", action="store_true", help="refine_labels(split=True)")
    parser.add_argument("--side", type=int, default=256, help="scene side in pixels")
    parser.add_argument("--tiling", choices=("auto", "none"), default="auto")
    args = parser.parse_args()
    torch.set_num_threads(2)
    sa = SegAny("builtin", tiling=None if args.tiling == "none" else "auto")
    print(
        f"built-in model, {args.images} scenes of {args.side} px per kind, seed {args.seed}, "
        f"split={args.split}, tiling={args.tiling}"
    )
    print(
        f"{'kind':8} {'n':>4} {'IoU before':>10} {'IoU after':>10} {'gain':>7} "
        f"{'accepted':>8} {'covered':>8} {'exact n':>7} {'exact same':>10}"
    )
    start = time.perf_counter()
    for kind_index, kind in enumerate(KINDS):
        rng = np.random.default_rng([args.seed, kind_index])
        totals = {"before": [], "after": [], "covered": [], "same": [], "accepted": []}
        tiled_scenes = 0
        for _ in range(args.images):
            side = (args.side, args.side)
            scene = generate_scene(rng, side, kind="nuclei", radius=rng.uniform(8, 20))
            degraded, changed = degrade(scene.labels, kind, rng)
            sa.set_image(scene.image)
            if sa.tiled is not None:
                tiled_scenes += 1
            refined = sa.refine_labels(degraded, split=args.split)
            accepted = {o.obj_id for o in sa.last_refinement.outcomes if o.accepted}
            for key, values in score_scene(scene.labels, degraded, refined, changed, kind).items():
                totals[key] += values
            totals["accepted"] += [i in accepted for i in changed]
        before, after = np.mean(totals["before"]), np.mean(totals["after"])
        print(
            f"{kind:8} {len(totals['before']):4d} {before:10.3f} {after:10.3f} "
            f"{after - before:+7.3f} {np.mean(totals['accepted']):8.2f} "
            f"{np.mean(totals['covered']):8.3f} {len(totals['same']):7d} "
            f"{np.mean(totals['same']):10.2f}" + ("  (tiled)" if tiled_scenes else "")
        )
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
