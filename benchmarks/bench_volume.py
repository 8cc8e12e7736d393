"""Objects through z: seconds per propagated slice and the peak memory of a long stack.

A generated 3D nuclei stack (``core.synthetic.volume``, ``--slices`` x ``--size`` x
``--size``); ``--objects`` nuclei are clicked once at their middle slice (as
``training/evaluate_volume.py`` picks them: at least 3 slices deep, off the ends) and
propagated through the stack (``SegAny.open_volume``: by projection, or by SAM 2.1's
memory for a SAM 2.1 model). Printed: seconds for the clicks, seconds per propagated
slice-object step (a step = one slice of one object; the first visit of a slice
includes its embedding), the slices embedded, and the growth of the peak RSS over the
whole run (Linux). ``--model`` takes a registry name or a checkpoint path;
``--sam2-random SIZE`` builds a random-weight SAM 2.1 of that size instead (no
download; speed only: its masks mean nothing), and ``--reference`` then also runs
Meta's ``SAM2VideoPredictor`` with the same weights, frames and clicks (forward then
backward from the first clicked slice, as ours) and prints its figures and the ratio.

Usage::

    PYTHONPATH=src python benchmarks/bench_volume.py --threads 2
    PYTHONPATH=src python benchmarks/bench_volume.py --threads 2 --slices 200 --size 512
    PYTHONPATH=src python benchmarks/bench_volume.py --threads 2 --sam2-random tiny \
        --slices 8 --objects 2 --reference
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import reset_peak, status_mib  # also puts src/ and the root on sys.path
from napari_segany import SegAny
from napari_segany.core.image import preprocess_square
from napari_segany.core.synthetic.volume import generate_volume


def _session(args) -> SegAny:
    if not args.sam2_random:
        return SegAny(args.model, device="cpu")
    from tests.oracle import standins

    standins.install()
    from tests.oracle.sam2_upstream import reference_video_predictor

    path = Path(tempfile.mkdtemp()) / f"sam2.1_hiera_{args.sam2_random}_random.pt"
    state = reference_video_predictor(args.sam2_random, seed=0).state_dict()
    torch.save({"model": state}, path)
    return SegAny(path, device="cpu")


def _reference(args, session: SegAny, stack: np.ndarray, clicks) -> tuple[float, int]:
    """Meta's video predictor on the same frames and clicks: (seconds, steps)."""
    import sam2.sam2_video_predictor as video_module
    from tests.oracle.sam2_upstream import reference_video_predictor

    predictor = reference_video_predictor(args.sam2_random, seed=0)
    model = session.predictor.model
    mean, std = model.pixel_mean.flatten().tolist(), model.pixel_std.flatten().tolist()
    size = model.image_size
    frames = torch.cat(
        [preprocess_square(session.predictor.rgb(plane), size, "cpu", mean, std) for plane in stack]
    )
    video_module.load_video_frames = lambda **_: (frames, *stack.shape[1:3])
    steps = 0
    with torch.inference_mode():
        state = predictor.init_state(video_path="frames")
        for obj_id, (_, index, point) in enumerate(clicks, start=1):
            xy = np.asarray(point, np.float32)[:, ::-1].copy()
            predictor.add_new_points_or_box(state, index, obj_id, points=xy, labels=[1])
        start = time.perf_counter()
        for reverse in (False, True):
            for _ in predictor.propagate_in_video(state, reverse=reverse):
                steps += len(clicks)
    return time.perf_counter() - start, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--sam2-random", choices=["tiny", "small", "base_plus", "large"])
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", action="store_true", help="with --sam2-random")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from training.evaluate_volume import nucleus_clicks  # the root is on sys.path now

    scene = generate_volume(np.random.default_rng(1), (args.slices, args.size, args.size), 9.0, 2.5)
    session = _session(args)
    base = reset_peak()  # the generator's peak is not the run's
    volume = session.open_volume(scene.image)
    clicks = nucleus_clicks(scene.labels, args.objects)
    start = time.perf_counter()
    for obj_id, (_, index, point) in enumerate(clicks, start=1):
        volume.prompt(obj_id, index, points_yx=point, labels=[1])
    clicked = time.perf_counter() - start
    reports = []
    start = time.perf_counter()
    labels = volume.propagate(on_progress=reports.append)
    seconds = time.perf_counter() - start
    walked = reports[-1].done  # slice-object steps
    print(
        f"model {session.predictor.name}, stack {args.slices} x {args.size} x {args.size}, "
        f"{len(volume.object_ids)} objects, torch {torch.__version__}, {args.threads} threads"
    )
    print(f"clicks: {clicked:.2f} s for {len(volume.object_ids)} objects")
    print(
        f"propagation: {seconds:.2f} s for {walked} slice steps "
        f"({seconds / max(walked, 1):.3f} s per step), "
        f"{int((labels > 0).any((1, 2)).sum())} slices with objects, "
        f"{len(session.cache)} embeddings cached"
    )
    print(f"peak RSS growth over the run: {status_mib('VmHWM') - base:.0f} MiB")
    if args.reference and args.sam2_random:
        base = reset_peak()
        theirs, their_steps = _reference(args, session, scene.image, clicks)
        per_step, ours = theirs / max(their_steps, 1), seconds / max(walked, 1)
        print(
            f"reference SAM2VideoPredictor: {theirs:.2f} s for {their_steps} slice steps "
            f"({per_step:.3f} s per step); ours {per_step / ours:.2f}x faster per step; "
            f"its peak RSS growth {status_mib('VmHWM') - base:.0f} MiB"
        )


if __name__ == "__main__":
    main()
