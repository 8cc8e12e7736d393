"""SAM 2.1 benchmark: Meta's ``SAM2ImagePredictor`` vs napari-segany, same weights, one run.

Both hold the same random SAM 2.1 weights (saved as the official files are,
``{"model": state}``, and loaded by path through ``SegAny``); one RGB image of
``--size`` x ``--size``. Timed, medians of ``--repeats`` after one warm-up:

- embedding (``set_image``): upstream fp32, ours fp32, ours ``"auto"`` (bf16 where the
  device has it natively), alternating upstream / ours;
- one point prompt with three masks at full resolution (``predict`` / ``segment``),
  alternating, median of ``--prompt-repeats`` and the ratio within each pair;
- agreement: the click's masks (IoU) and scores against upstream's, fp32;
- with ``--everything N``: everything mode on a 512 x 512 plane with N x N points and
  no IoU / stability filters (``--use-m2m``: with the mask-to-mask refinement),
  ``SAM2AutomaticMaskGenerator.generate`` vs ``set_image`` +
  ``segment_everything``, one run each, embedding included;
- with ``--memory``: the peak RSS growth of one embedding (after loading; the peak is
  reset first, Linux), upstream, ours fp32 and ours auto, each in its own process.

Usage::

    python benchmarks/bench_sam2.py --threads 2                 # sam2.1 tiny, 1024, CPU
    python benchmarks/bench_sam2.py --size-name base_plus --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import (  # also puts src/ and the root on sys.path
    blob_image,
    interleaved_times,
    mask_iou,
    reset_peak,
    status_mib,
)

MEMORY_RUNS = ("upstream", "ours-fp32", "ours-auto")


def memory_child(impl: str, weights: Path, size: int, size_name: str) -> dict:
    """In a child process: peak RSS growth (MiB) of the first embedding after loading."""
    from tests.oracle.sam2_upstream import reference_image_predictor, reference_sam2

    from napari_segany.api import SegAny

    image = blob_image(size, size)
    if impl == "upstream":
        model = reference_sam2(size_name, seed=0)
        model.load_state_dict(torch.load(weights, weights_only=True)["model"])
        predictor = reference_image_predictor(model)
        base = reset_peak()
        with torch.inference_mode():
            predictor.set_image(image)
    else:
        session = SegAny(weights, device="cpu", precision=impl.split("-")[1])
        base = reset_peak()
        session.set_image(image)
    return {"impl": impl, "peak_rss_growth_mb": status_mib("VmHWM") - base}


def memory_table(weights: Path, args: argparse.Namespace) -> list[dict]:
    """:func:`memory_child` of each of :data:`MEMORY_RUNS`, each in its own process."""
    rows = []
    for impl in MEMORY_RUNS:
        command = [sys.executable, __file__, "--memory-child", impl, "--weights", str(weights)]
        command += ["--size", str(args.size), "--threads", str(args.threads)]
        command += ["--size-name", args.size_name]
        child = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size-name", default="tiny", choices=["tiny", "small", "base_plus", "large"]
    )
    parser.add_argument("--size", type=int, default=1024, help="image side, pixels")
    parser.add_argument("--repeats", type=int, default=3, help="embeddings timed")
    parser.add_argument("--prompt-repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--memory", action="store_true", help="also peak RSS growth of one embedding each"
    )
    parser.add_argument(
        "--everything",
        type=int,
        default=0,
        metavar="N",
        help="also time everything mode with N x N points on a 512 x 512 plane, no filters",
    )
    parser.add_argument(
        "--use-m2m", action="store_true", help="everything mode with the m2m refinement"
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from tests.oracle import standins

    standins.install()
    if args.memory_child:
        child = memory_child(args.memory_child, args.weights, args.size, args.size_name)
        print(json.dumps(child))
        return 0
    from tests.oracle.sam2_upstream import reference_image_predictor, reference_sam2

    from napari_segany.api import SegAny

    image = blob_image(args.size, args.size)
    reference = reference_sam2(args.size_name, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"sam2.1_hiera_{args.size_name}_random.pt"
        torch.save({"model": reference.state_dict()}, path)
        ours = SegAny(path, device="cpu", precision="fp32")
        ours_auto = SegAny(path, device="cpu", precision="auto")
        memory = memory_table(path, args) if args.memory else []
    upstream = reference_image_predictor(reference)

    def upstream_embed():
        with torch.inference_mode():
            upstream.set_image(image)

    def our_embed(session=ours):
        session.cache.clear()
        session.set_image(image)

    up_embed, our_embed_s = interleaved_times(upstream_embed, our_embed, args.repeats, warmup=1)
    auto_embed = [0.0] * args.repeats
    our_embed(ours_auto)
    for index in range(args.repeats):
        start = time.perf_counter()
        our_embed(ours_auto)
        auto_embed[index] = time.perf_counter() - start
    point_yx = np.array([[args.size * 0.5, args.size * 0.5]])

    def upstream_click():
        with torch.inference_mode():
            return upstream.predict(point_yx[:, ::-1].copy(), np.array([1]), multimask_output=True)

    def our_click():
        return ours.segment(points_yx=point_yx, labels=[1])

    up_click, our_click_s = interleaved_times(
        upstream_click, our_click, args.prompt_repeats, warmup=1
    )
    theirs, mine = upstream_click(), our_click()
    pair_ratios = np.array(up_click) / np.array(our_click_s)
    median = statistics.median
    print(
        f"SAM 2.1 {args.size_name} (random weights), {args.size}x{args.size}, CPU, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"precision auto = {ours_auto.predictor.precision}"
    )
    print("| step | upstream | ours | speed-up |")
    print("|---|---|---|---|")
    print(
        f"| embedding fp32 (median of {args.repeats}, interleaved) | {median(up_embed):.2f} s "
        f"| {median(our_embed_s):.2f} s | {median(up_embed) / median(our_embed_s):.2f}x |"
    )
    print(
        f"| embedding auto ({ours_auto.predictor.precision}) | {median(up_embed):.2f} s "
        f"| {median(auto_embed):.2f} s | {median(up_embed) / median(auto_embed):.2f}x |"
    )
    quartiles = np.percentile(pair_ratios, [25, 50, 75])
    print(
        f"| one point prompt, 3 masks (median of {args.prompt_repeats}, interleaved) "
        f"| {median(up_click) * 1e3:.1f} ms | {median(our_click_s) * 1e3:.1f} ms "
        f"| {median(up_click) / median(our_click_s):.2f}x (pairs: {quartiles[1]:.2f}x, "
        f"{quartiles[0]:.2f}-{quartiles[2]:.2f}) |"
    )
    ious = [mask_iou(a, b) for a, b in zip(mine.masks, theirs[0])]
    score_gap = float(np.abs(mine.scores - theirs[1]).max())
    agreement = f"{min(ious):.4f}; {score_gap:.1e}"
    print(f"| click masks: min IoU vs upstream; max score difference | | {agreement} | |")
    growth = {row["impl"]: row["peak_rss_growth_mb"] for row in memory}
    for impl in MEMORY_RUNS[1:] if growth else ():
        print(
            f"| peak RSS growth of one embedding, {impl} | {growth['upstream']:.0f} MiB "
            f"| {growth[impl]:.0f} MiB | |"
        )
    if args.everything:
        print(everything_row(reference, ours, args.everything, args.use_m2m))
    return 0


def everything_row(reference, ours, points_per_side: int, use_m2m: bool = False) -> str:
    """One table row: SAM2AutomaticMaskGenerator vs ``segment_everything`` on a 512 x
    512 plane, ``points_per_side`` squared points, no IoU / stability filters, the
    embedding included on both sides (one run each), with or without ``use_m2m``."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    plane = blob_image(512, 512, seed=1)
    params = {
        "points_per_side": points_per_side,
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
        "use_m2m": use_m2m,
    }
    generator = SAM2AutomaticMaskGenerator(reference, **params)
    start = time.perf_counter()
    with torch.inference_mode():
        theirs = generator.generate(plane)
    upstream_s = time.perf_counter() - start
    ours.cache.clear()
    start = time.perf_counter()
    ours.set_image(plane)
    mine = ours.segment_everything(mode="grid", **params)
    ours_s = time.perf_counter() - start
    return (
        f"| everything mode{', m2m' if use_m2m else ''}, 512 x 512, "
        f"{points_per_side}x{points_per_side} points, no filters, embedding included "
        f"({len(theirs)} / {len(mine.objects)} masks) "
        f"| {upstream_s:.1f} s | {ours_s:.1f} s | {upstream_s / ours_s:.2f}x |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
