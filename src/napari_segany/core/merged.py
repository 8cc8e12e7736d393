"""Objects that are two under one id (a merged pair), found and separated by the model.

A refinement prompt (box, mask, interior point) of a merged pair covers the pair, and
the model answers the pair. Here each object is also *probed* the way a user clicks:
one positive point at its most interior pixel, nothing else. The object is taken as
two when (:func:`separate`):

1. the probe's answer is not a guess (predicted IoU >= ``min_score``) and covers only
   a part of the object (``min_part`` to ``max_part`` of its pixels);
2. a second probe, at the most interior pixel of the rest of the object, is not a
   guess either, covers at least ``min_part`` of the object, and lies apart from the
   first (at most ``max_overlap`` of it inside the first answer).

The shapes decide; ``min_score`` (0.35) only drops guesses. With 0.7 the built-in
model's answers missed most merged pairs (``benchmarks/bench_refine.py --images 8``
with this default edited: merged pairs' IoU gain +0.05 with 0.7, +0.15 with 0.35;
their exact objects left unchanged 0.83 and 0.82).

Then the object's pixels are shared between the two answers (each pixel to the nearer
one): the part of the first probe keeps the id, the other part is what the object
loses (background, or a new id with ``split``). A single object -- one nucleus, one
cell -- is answered whole by the first probe and never separated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .depth import deepest_pixel

# points_yx (N, 1, 2) -> (masks (N, H, W) bool, scores (N,)): one click each
Probe = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class MergedRules:
    """When an object is taken as two (module docstring)."""

    min_score: float = 0.35
    min_part: float = 0.25
    max_part: float = 0.75
    max_overlap: float = 0.2
    min_depth_px: float = 2.0


def separate(
    labels: np.ndarray, ids: Sequence[int], probe: Probe, rules: MergedRules = MergedRules()
) -> dict[int, tuple[np.ndarray, float]]:
    """The objects of ``labels`` among ``ids`` that are two, each with the (H, W) part
    that keeps its id and the first probe's predicted IoU.

    Parameters
    ----------
    labels : numpy.ndarray, (H, W) int
    ids : sequence of int
    probe : callable
        One positive click per object (see :data:`Probe`), e.g. the session's decoder.
    """
    if not len(ids):
        return {}
    owns = [labels == obj_id for obj_id in ids]
    first_points = np.array([[deepest_pixel(own)[0]] for own in owns], dtype=np.float64)
    first, first_scores = probe(first_points)
    candidates, second_points = [], []
    for index, own in enumerate(owns):
        part = first[index] & own
        share = part.sum() / max(1, own.sum())
        if first_scores[index] < rules.min_score or not rules.min_part <= share <= rules.max_part:
            continue
        point, depth = deepest_pixel(own & ~part)
        if depth >= rules.min_depth_px:
            candidates.append(index)
            second_points.append([point])
    if not candidates:
        return {}
    second, second_scores = probe(np.array(second_points, dtype=np.float64))
    found = {}
    for k, index in enumerate(candidates):
        own, kept = owns[index], first[index] & owns[index]
        other = second[k] & own
        apart = (other & kept).sum() <= rules.max_overlap * max(1, other.sum())
        large = other.sum() >= rules.min_part * own.sum()
        if second_scores[k] >= rules.min_score and apart and large:
            nearer = ndimage.distance_transform_edt(~kept) <= ndimage.distance_transform_edt(
                ~(other & ~kept))  # fmt: skip
            found[int(ids[index])] = (own & nearer, float(first_scores[index]))
    return found
