"""Everything mode over a stack, objects linked through z by overlap or by propagation
(the built-in model)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany import SegAny
from napari_segany.core.errors import InputError
from napari_segany.core.volume.carry import CARRY_RULES, carry_objects


@pytest.fixture(scope="module")
def session():
    return SegAny("builtin", device="cpu")


def _drifting_discs(slices=5, shift=10, radius=12):
    """Two bright discs moving ``shift`` px per slice (0.8 radius: consecutive discs
    overlap with IoU ~0.34, below any overlap link), and their labels."""
    yy, xx = np.mgrid[:96, :128]
    labels = np.zeros((slices, 96, 128), np.uint16)
    for index in range(slices):
        for obj_id, (cy, cx) in enumerate([(30, 20 + shift * index), (68, 100 - shift * index)], 1):
            labels[index][(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = obj_id
    rng = np.random.default_rng(3)
    image = 200 + 900.0 * (labels > 0) + rng.normal(0, 30, labels.shape)
    return image.clip(0).astype(np.uint16), labels


def test_linking_by_propagation_follows_objects_that_move_past_their_overlap(session):
    stack, truth = _drifting_discs()
    by_overlap = session.segment_everything_stack(stack, link="overlap")
    by_propagation = session.segment_everything_stack(stack, link="propagation")
    for index in range(len(stack)):  # both find the discs on every slice
        for result in (by_overlap, by_propagation):
            found = {int(v) for v in np.unique(result.labels[index][truth[index] > 0]) if v}
            assert len(found) == 2
    ids_per_disc = [
        {int(v) for v in np.unique(by_propagation.labels[truth == obj_id]) if v}
        for obj_id in (1, 2)
    ]
    assert [len(ids) for ids in ids_per_disc] == [1, 1]  # one id each through the stack
    assert len(np.unique(by_overlap.labels)) - 1 > 2  # overlap alone loses them


def test_link_must_be_a_known_rule(session):
    with pytest.raises(InputError, match="link must be"):
        session.segment_everything_stack(np.zeros((2, 32, 32), np.uint8), link="nearest")


def test_carry_leaves_out_objects_that_do_not_continue():
    """An object the model finds nowhere (score too low) is not carried; two carried
    objects that overlap: the higher-scored one wins there."""
    previous = np.zeros((40, 40), np.uint16)
    previous[5:15, 5:15], previous[20:30, 20:30], previous[5:12, 25:35] = 3, 7, 9
    answers = {
        3: (np.pad(np.ones((10, 20), bool), ((5, 25), (4, 16))), 0.9),  # wider
        7: (np.pad(np.ones((10, 10), bool), ((20, 10), (20, 10))), 0.2),  # too unsure
        9: (np.pad(np.ones((7, 12), bool), ((5, 28), (22, 6))), 0.8),  # overlaps 3
    }

    def predict(prompt):
        y, x = (int(v) for v in prompt["points_yx"][0])
        return answers[int(previous[y, x])]

    carried = carry_objects(previous, predict, CARRY_RULES)
    assert set(np.unique(carried)) == {0, 3, 9}
    assert (carried[5:12, 22:24] == 3).all()  # 3 (0.9) over 9 (0.8) where both are
    assert (carried[5:12, 24:34] == 9).all()
