"""Exports of a large label plane: the object table and COCO RLE, timed, checked.

    cd benchmarks && ../.venv/bin/python bench_exports.py [--side 4096] [--objects 20000]

A Voronoi label plane (every pixel labelled, ``--objects`` random seeds) is exported
with ``core.exports``; the table is compared with ``skimage.measure.regionprops``
(ids, areas, boxes, centroids) and every 50th annotation's RLE with
``pycocotools.mask.encode`` (the test oracle), in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from _common import ROOT  # noqa: F401  (puts src/ on the path)
from napari_segany.core.exports import (
    coco_annotations,
    object_table,
    write_coco,
    write_object_table,
)


def voronoi(side: int, objects: int, seed: int = 0) -> np.ndarray:
    """(side, side) uint32 labels: each pixel takes the id of its nearest seed."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros((side, side), np.uint32)
    seeds[rng.integers(0, side, objects), rng.integers(0, side, objects)] = np.arange(
        1, objects + 1, dtype=np.uint32)  # fmt: skip
    _, (rows, cols) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    return seeds[rows, cols]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--objects", type=int, default=20000)
    args = parser.parse_args()
    labels = voronoi(args.side, args.objects)
    start = time.perf_counter()
    table = object_table(labels)
    table_s = time.perf_counter() - start
    start = time.perf_counter()
    coco = coco_annotations(labels)
    coco_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_object_table(labels, Path(folder) / "t.csv")
        write_coco(labels, Path(folder) / "c.json")
        write_s = time.perf_counter() - start
    print(f"{args.side} x {args.side}, {len(table)} objects: object_table {table_s:.2f} s, "
          f"coco_annotations {coco_s:.2f} s, both files written {write_s:.2f} s")  # fmt: skip
    from skimage.measure import regionprops

    props = regionprops(labels)
    assert [p.label for p in props] == table.ids.tolist()
    assert np.array_equal([p.area for p in props], table.area)
    assert np.array_equal([p.bbox for p in props], table.bbox_yxyx)
    assert np.allclose([p.centroid for p in props], table.centroid_yx)
    import pycocotools.mask as coco_mask

    for annotation in coco["annotations"][::50]:
        mask = np.asfortranarray((labels == annotation["label_id"]).astype(np.uint8))
        assert coco_mask.encode(mask)["counts"].decode() == annotation["segmentation"]["counts"]
    print("table equal to regionprops; RLE equal to pycocotools on every 50th object")


if __name__ == "__main__":
    main()
