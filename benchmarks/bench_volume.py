"""Objects through z: seconds per propagated slice and the peak memory of a long stack.

A generated 3D nuclei stack (``core.synthetic.volume``, ``--slices`` x ``--size`` x
``--size``); ``--objects`` nuclei are clicked once at their middle slice (as
``training/evaluate_volume.py`` picks them: at least 3 slices deep, off the ends) and
propagated through the stack (``SegAny.open_volume``, projection). Printed: seconds
for the clicks, seconds per propagated slice-object step (a step = one slice of one
object; the first visit of a slice includes its embedding), the slices embedded, and
the growth of the peak RSS over the whole run (Linux). ``--model`` takes a registry
name or a checkpoint path; ``--sam2-random SIZE`` builds a random-weight SAM 2.1 of
that size instead (no download; speed only: its masks mean nothing).

Usage::

    PYTHONPATH=src python benchmarks/bench_volume.py --threads 2
    PYTHONPATH=src python benchmarks/bench_volume.py --threads 2 --slices 200 --size 512
    PYTHONPATH=src python benchmarks/bench_volume.py --threads 2 --sam2-random tiny --slices 8
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
from napari_segany.core.synthetic.volume import generate_volume


def _session(args) -> SegAny:
    if not args.sam2_random:
        return SegAny(args.model, device="cpu")
    from tests.oracle import standins

    standins.install()
    from tests.oracle.sam2_upstream import reference_sam2

    path = Path(tempfile.mkdtemp()) / f"sam2.1_hiera_{args.sam2_random}_random.pt"
    torch.save({"model": reference_sam2(args.sam2_random, seed=0).state_dict()}, path)
    return SegAny(path, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--sam2-random", choices=["tiny", "small", "base_plus", "large"])
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
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
    steps = []  # one report "object N" per slice done
    start = time.perf_counter()
    labels = volume.propagate(on_progress=lambda report: steps.append(report.message))
    seconds = time.perf_counter() - start
    walked = sum(message.startswith("object ") and "slice" not in message for message in steps)
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


if __name__ == "__main__":
    main()
