"""Everything mode on a large plane: tiled (``SegAny(tiling="auto")``) against one pass
and against untiled runs on each 1024 x 1024 block (issue 23).

A generated plane of small nuclei (the built-in model, fp32, this machine's threads):
prints, per run, seconds and objects; for the tiled run, the share of each block's
untiled objects it finds (IoU >= 0.5 on the block) and the share of the true nuclei
found by each run (IoU >= 0.5).

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_tiling.py            # 4096 x 4096
    PYTHONPATH=src .venv/bin/python benchmarks/bench_tiling.py --side 2048
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def found_share(found: np.ndarray, wanted: np.ndarray) -> tuple[int, int]:
    """(objects of ``wanted`` matched by one of ``found`` with IoU >= 0.5, objects)."""
    from training.evaluate_builtin import best_overlap_ious

    ious = best_overlap_ious(wanted, found)
    return int((ious >= 0.5).sum()), len(ious)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--radius", type=float, default=8.0, help="nuclei radius (px)")
    parser.add_argument("--block", type=int, default=1024)
    args = parser.parse_args()
    from napari_segany.api import SegAny
    from napari_segany.core.synthetic import generate_scene

    rng = np.random.default_rng(0)
    scene = generate_scene(rng, (args.side, args.side), "nuclei", radius=args.radius)
    tiled = SegAny("builtin", device="cpu", precision="fp32")  # tiling="auto"
    start = time.perf_counter()
    tiled.set_image(scene.image)
    limits = tiled.tiled.reading[0]
    result = tiled.segment_everything()
    tiled_s = time.perf_counter() - start
    windows = len(tiled.tiled.windows)
    one = SegAny("builtin", device="cpu", precision="fp32", tiling=None)
    start = time.perf_counter()
    one.set_image(scene.image, contrast_limits=limits)
    whole = one.segment_everything().labels
    whole_s = time.perf_counter() - start
    blocks_s, found, total, block_labels = 0.0, 0, 0, np.zeros_like(whole)
    for y in range(0, args.side, args.block):
        for x in range(0, args.side, args.block):
            part = scene.image[y : y + args.block, x : x + args.block]
            start = time.perf_counter()
            one.set_image(part, contrast_limits=limits)
            labels = one.segment_everything().labels
            blocks_s += time.perf_counter() - start
            seen = result.labels[y : y + args.block, x : x + args.block]
            hits, count = found_share(seen, labels)
            found, total = found + hits, total + count
            block_labels[y : y + args.block, x : x + args.block] = labels + (labels > 0) * (
                block_labels.max()
            )
    truth = scene.labels
    print(
        f"{args.side} x {args.side} generated nuclei (radius {args.radius}, "
        f"{truth.max()} nuclei), built-in model, fp32, {torch.get_num_threads()} threads"
    )
    print(f"{'run':<34}{'seconds':>9}{'objects':>9}{'truth found':>13}")
    for name, seconds, labels in (
        (f"tiled, auto ({windows} windows)", tiled_s, result.labels),
        ("one pass (tiling=None)", whole_s, whole),
        (f"untiled per {args.block}^2 block", blocks_s, block_labels),
    ):
        hits, count = found_share(labels, truth)
        print(f"{name:<34}{seconds:>9.1f}{len(np.unique(labels)) - 1:>9}{hits / count:>13.3f}")
    print(f"tiled run finds {found} of the blocks' {total} objects ({found / total:.3f})")


if __name__ == "__main__":
    main()
