"""Splitting merged pairs with a click (``Curation.split``) against two other rules.

    cd benchmarks && ../.venv/bin/python bench_split.py [--scenes 8] [--pairs 3]

On generated 256 x 256 nuclei scenes, pairs of touching nuclei are put under one id
and split at a click on the centre of one of them. For each rule the table gives the
mean IoU of the two parts (the part kept and the part cut off) with their nuclei:

- ``curation``: what ``Curation.split`` does (``curation/edits.split_mask``): the model
  answers the part kept (a click deep in the object, far from the clicked one) and the
  part clicked, each pixel goes to the nearer answer;
- ``box + negative``: the part kept answered from its seed, the object's box and the
  click as a negative point (one answer);
- ``negative``: the same without the box.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy import ndimage

from _common import ROOT  # noqa: F401  (puts src/ on the path)
from napari_segany import SegAny
from napari_segany.core.errors import InputError
from napari_segany.core.synthetic import generate_scene, interior_point_yx
from napari_segany.curation.edits import split_mask


def touching_pairs(truth: np.ndarray, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` pairs of nuclei that touch, largest first."""
    ids, areas = np.unique(truth[truth > 0], return_counts=True)
    pairs, used = [], set()
    for obj in ids[np.argsort(-areas)]:
        ring = ndimage.binary_dilation(truth == obj, iterations=2) & (truth != obj)
        others = [int(v) for v in np.unique(truth[ring & (truth > 0)]) if v not in used]
        if obj not in used and others:
            pairs.append((int(obj), others[0]))
            used.update({int(obj), others[0]})
        if len(pairs) == count:
            break
    return pairs


def one_answer(sa, own: np.ndarray, click: np.ndarray, with_box: bool) -> np.ndarray:
    """The part kept, answered once: a seed far from the click, the click negative."""
    depth = ndimage.distance_transform_edt(np.pad(own, 1))[1:-1, 1:-1]
    rows, cols = np.nonzero(depth >= 0.5 * depth.max())
    far = np.argmax(np.hypot(rows - click[0, 0], cols - click[0, 1]))
    points = np.array([[rows[far], cols[far]], click[0]], dtype=np.float64)
    ys, xs = np.nonzero(own)
    box = [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1] if with_box else None
    answer = sa.segment(points_yx=points, labels=[1, 0], box_yxyx=box, multimask=False)
    return answer.best()[0] & own


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    sa = SegAny("builtin")
    scores: dict[str, list[float]] = {"curation": [], "box + negative": [], "negative": []}
    for seed in range(11, 11 + args.scenes):
        scene = generate_scene(np.random.default_rng(seed), (256, 256), "nuclei", radius=12.0)
        truth = scene.labels
        sa.set_image(scene.image)
        for a, b in touching_pairs(truth, args.pairs):
            merged = np.where(truth == b, a, truth)
            own = merged == a
            click = np.array([interior_point_yx(truth == b, edge_is_background=False)], float)
            try:
                separated = split_mask(sa, merged, a, click)
            except InputError:  # nothing separated: the object stays whole
                separated = own
            kept = {
                "curation": separated,
                "box + negative": one_answer(sa, own, click, True),
                "negative": one_answer(sa, own, click, False),
            }
            for rule, part in kept.items():
                rest = own & ~part
                first = a if part[tuple(click[0].astype(int))] == 0 else b
                second = b if first == a else a
                scores[rule].append((iou(part, truth == first) + iou(rest, truth == second)) / 2)
    for rule, values in scores.items():
        print(f"{rule:16} pairs {len(values):3}  mean IoU of both parts {np.mean(values):.3f}")


if __name__ == "__main__":
    main()
