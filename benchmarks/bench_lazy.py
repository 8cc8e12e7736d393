"""Memory of prompting one slice of a large lazy stack (issue 23).

A 200 x 4096 x 4096 uint16 dask array (6.7 GB if it were read; each slice generated
on demand, one chunk per slice) is opened as a volume with the built-in model; one
slice is clicked and its mask computed. Prints the peak resident set size of this
fresh process (Linux ``ru_maxrss``) and the bytes the stack would take in memory, and
how many slices were read.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_lazy.py            # 200 x 4096^2
    PYTHONPATH=src .venv/bin/python benchmarks/bench_lazy.py --slices 20 --side 2048
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def lazy_stack(slices: int, side: int, reads: list):
    """A (slices, side, side) uint16 dask array of blobs, each slice made when read."""
    import dask.array as da

    def make(block_id):
        index = block_id[0]
        reads.append(index)
        rng = np.random.default_rng(index)
        plane = rng.normal(300, 40, (side, side))
        yy, xx = np.ogrid[:side, :side]
        for cy, cx in rng.uniform(0, side, (40, 2)):
            plane[(yy - cy) ** 2 + (xx - cx) ** 2 < (side / 40) ** 2] += 2000
        return np.clip(plane, 0, 65535).astype(np.uint16)[None]

    return da.map_blocks(
        make, dtype=np.uint16, chunks=((1,) * slices, (side,), (side,)), meta=np.zeros((0, 0, 0))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--side", type=int, default=4096)
    args = parser.parse_args()
    from napari_segany.api import SegAny

    session = SegAny("builtin", device="cpu")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reads: list = []
    stack = lazy_stack(args.slices, args.side, reads)
    start = time.perf_counter()
    volume = session.open_volume(stack)
    middle = args.slices // 2
    click = [[args.side / 2, args.side / 2]]
    result = volume.prompt(obj_id=1, index=middle, points_yx=click, labels=[1])
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    virtual = stack.nbytes / 2**30
    print(
        f"{args.slices} x {args.side} x {args.side} uint16 dask stack ({virtual:.1f} GiB if read), "
        f"built-in model, one click on slice {middle}"
    )
    print(f"slices read: {len(set(reads))} (contrast limits sample, then the clicked slice)")
    print(f"mask area {int(result.masks[0].sum())} px, {elapsed:.1f} s")
    print(f"peak RSS {peak:.0f} MiB (after loading the model: {before:.0f} MiB)")


if __name__ == "__main__":
    main()
