"""Carrying a plane's objects onto the next plane by projection (linking by propagation).

Everything mode over a stack finds objects plane by plane; to give one object one id
through z (or t) they are linked between neighbouring planes. By overlap, an object
links to the one it overlaps on the previous plane; that fails where objects move or
change shape between planes by more than their overlap (coarse z steps, fast cells).
By propagation, each object of the previous plane is first carried onto the next
plane as a propagated object would be (:mod:`.projection`: its prompt from the
previous mask, the model's answer kept only while :func:`.projection.continues`), and
the next plane's objects link to the carried ones (IoU, one to one).

:data:`CARRY_RULES` are the projection's rules without the overlap with the previous
mask (``min_iou`` 0): the link's own IoU test judges the carried mask, and an object
that moved by more than its overlap is what this linking is for.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .projection import ProjectionRules, continues, projected_prompt

__all__ = ["CARRY_RULES", "carry_objects"]

CARRY_RULES = ProjectionRules(min_iou=0.0)

# prompt keywords -> ((H, W) bool mask, predicted IoU) on the next plane
PlanePredict = Callable[[dict], tuple[np.ndarray, float]]


def carry_objects(
    previous: np.ndarray, predict: PlanePredict, rules: ProjectionRules
) -> np.ndarray:
    """The objects of ``previous`` ((H, W) labels) as found on the next plane by
    ``predict``: (H, W) labels with their ids; an object that does not continue is
    left out; where two carried objects overlap the higher-scored one wins."""
    found = []
    for obj_id in np.unique(previous):
        if obj_id == 0:
            continue
        mask = previous == obj_id
        carried, score = predict(projected_prompt(mask, rules))
        if continues(carried, score, mask, rules):
            found.append((score, int(obj_id), carried))
    labels = np.zeros_like(previous)
    for _, obj_id, carried in sorted(found, key=lambda entry: (entry[0], entry[1])):
        labels[carried] = obj_id
    return labels
