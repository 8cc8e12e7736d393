"""Batch everything mode: planes per second in this process vs on a local dask cluster.

    cd benchmarks && ../.venv/bin/python bench_batch.py [--planes 8] [--size 512] [--workers 2]
        [--threads 0]

The same inputs (``--planes`` generated nuclei planes of ``--size`` pixels, as two ZYX
TIFF stacks) go through ``napari-segany segment-all`` twice with the built-in model:
without ``--scheduler`` (units one after the other in this process) and with
``--scheduler local:N`` (N single-threaded worker processes). Each time covers the
whole command: the local cluster's start and each worker's model load included, as a
user waits for them. The labels of both runs are checked equal. On 2 cores expect no
gain (this process already uses both cores through torch's threads); the run proves
the path, and the ratio shows the cluster's overhead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

import _common  # noqa: F401  (puts src/ on sys.path)
from napari_segany.cli import main as cli
from napari_segany.core.synthetic import generate_scene


def _inputs(folder: Path, planes: int, size: int) -> list[str]:
    """Two ZYX stacks holding ``planes`` planes of generated nuclei together."""
    rng = np.random.default_rng(11)
    images = [
        generate_scene(rng, (size, size), kind="nuclei", radius=8.0, coverage=0.25).image
        for _ in range(planes)
    ]
    half = (planes + 1) // 2
    paths = []
    for name, part in (("first", images[:half]), ("second", images[half:])):
        if not part:
            continue
        path = folder / f"{name}.tif"
        stack = np.stack([np.asarray(p, dtype=np.uint16) for p in part])
        tifffile.imwrite(path, stack, photometric="minisblack", metadata={"axes": "ZYX"})
        paths.append(str(path))
    return paths


def _run(inputs: list[str], output: Path, extra: list[str]) -> float:
    start = time.perf_counter()
    args = ["segment-all", *inputs, "-o", f"{output}/", "--model", "builtin", "-q", *extra]
    if cli([*args, "--device", "cpu"]) != 0:
        raise SystemExit(f"segment-all failed: {' '.join(args)}")
    return time.perf_counter() - start


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--planes", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads of this process (0: torch's own)"
    )
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = _inputs(folder, args.planes, args.size)
        here = _run(inputs, folder / "here", [])
        dask = _run(inputs, folder / "dask", ["--scheduler", f"local:{args.workers}"])
        for path in inputs:
            name = Path(path).name
            same = np.array_equal(
                tifffile.imread(folder / "here" / name), tifffile.imread(folder / "dask" / name)
            )
            if not same:
                raise SystemExit(f"labels of {name} differ between the two runs")
    print(f"{args.planes} planes of {args.size} x {args.size}, built-in model, CPU")
    print(
        f"in-process ({threads} torch threads): {here:6.1f} s  {args.planes / here:5.2f} planes/s"
    )
    print(
        f"local:{args.workers} (1 thread each) : {dask:6.1f} s  {args.planes / dask:5.2f} planes/s"
    )
    print(f"ratio dask / in-process (planes/s): {here / dask:.2f}; labels equal")


if __name__ == "__main__":
    run()
