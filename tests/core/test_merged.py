"""core.merged with a fake probe: which objects are taken as two, and the part kept."""

import numpy as np

from napari_segany.core.depth import deepest_pixel
from napari_segany.core.merged import MergedRules, separate


def _disk(shape, centre, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _probe_from(objects, score=0.9):
    """A probe answering each click with the true object under it (empty elsewhere)."""

    def probe(points_yx):
        masks, scores = [], []
        for ((y, x),) in points_yx:
            hit = [m for m in objects if m[int(y), int(x)]]
            masks.append(hit[0] if hit else np.zeros(objects[0].shape, bool))
            scores.append(score)
        return np.array(masks), np.array(scores)

    return probe


def test_a_pair_under_one_id_is_separated_and_a_single_object_is_not():
    shape = (80, 120)
    left, right = _disk(shape, (40, 40), 15), _disk(shape, (40, 68), 14)
    alone = _disk(shape, (40, 100), 10)
    labels = np.zeros(shape, np.uint16)
    labels[left | right] = 3
    labels[alone] = 9
    found = separate(labels, [3, 9], _probe_from([left, right & ~left, alone]))
    assert set(found) == {3}
    part, score = found[3]
    kept = left if left[tuple(int(v) for v in deepest_pixel(labels == 3)[0])] else right
    assert ((part & kept).sum() / (part | kept).sum()) > 0.9 and score == 0.9
    assert not (part & ~(labels == 3)).any()  # within the object


def test_unsure_or_overlapping_answers_keep_the_object_whole():
    shape = (80, 120)
    left, right = _disk(shape, (40, 40), 15), _disk(shape, (40, 68), 14)
    labels = np.where(left | right, 5, 0).astype(np.int32)
    assert separate(labels, [5], _probe_from([left, right], score=0.2)) == {}
    whole = left | right  # the model answers the pair: one object
    assert separate(labels, [5], _probe_from([whole])) == {}
    strict = MergedRules(max_part=0.4)  # the first answer covers more than allowed
    assert separate(labels, [5], _probe_from([left, right & ~left]), strict) == {}
