"""Walks through a stack (``core.volume``) with a scripted predictor: where they go,
where they stop, what a correction replaces, and how slices are painted."""

from __future__ import annotations

import numpy as np

from napari_segany.core.volume import ProjectionRules, SliceMask, Track, paint_slice, walk

HW = (40, 40)


def _disk(radius: float, centre=(20, 20)) -> np.ndarray:
    yy, xx = np.mgrid[: HW[0], : HW[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


class Scripted:
    """A predictor answering a disk on slices ``first..last`` (radius by slice) and an
    off-centre blob elsewhere (a neighbour: the walk must stop there); records calls."""

    def __init__(self, first: int, last: int, radius=lambda index: 8.0):
        self.first, self.last, self.radius, self.calls = first, last, radius, []

    def __call__(self, index: int, prompt: dict):
        self.calls.append(index)
        if self.first <= index <= self.last:
            return _disk(self.radius(index)), 0.9
        return _disk(5, centre=(5, 34)), 0.9


def _track(anchor: int, radius: float = 8.0) -> Track:
    track = Track(1)
    track.prompts[anchor] = None
    track.masks[anchor] = SliceMask.of(_disk(radius), 0.95)
    return track


def _run(track, anchor, step, predict, count=12):
    return list(walk(track, anchor, step, count, HW, predict, ProjectionRules()))


def test_a_walk_follows_the_object_and_stops_where_it_ends():
    track, predict = _track(5), Scripted(2, 8)
    assert _run(track, 5, 1, predict) == [6, 7, 8]
    assert _run(track, 5, -1, predict) == [4, 3, 2]
    assert sorted(track.masks) == [2, 3, 4, 5, 6, 7, 8]
    assert all(track.masks[i].anchor == 5 for i in (2, 8))
    assert predict.calls == [6, 7, 8, 9, 4, 3, 2, 1]  # one look past each end


def test_an_object_ends_where_its_mask_shrinks_or_shifts_too_much():
    radius = {6: 7.0, 7: 5.5, 8: 1.0}
    predict = Scripted(0, 11, radius=lambda index: radius.get(index, 8.0))
    track = _track(5)
    assert _run(track, 5, 1, predict) == [6, 7]  # radius 1: below the area and IoU rules
    radius = {6: 7.0, 7: 4.0}  # IoU 0.33 with slice 6: below min_iou
    track = _track(5)
    assert _run(track, 5, 1, predict) == [6]


def test_an_object_that_grows_again_after_its_widest_slice_ends():
    radius = {6: 8.0, 7: 6.5, 8: 5.5, 9: 6.5, 10: 7.5}  # widest at 6, then the next one
    predict = Scripted(0, 11, radius=lambda index: radius.get(index, 8.0))
    track = _track(5, radius=7.0)
    assert _run(track, 5, 1, predict) == [6, 7, 8]  # 9: 1.4x the area at 8
    # from a pole towards the widest slice the area grows: no such stop
    radius = {6: 3.5, 7: 4.0, 8: 4.5, 9: 5.0}
    track = _track(5, radius=3.0)
    assert _run(track, 5, 1, Scripted(0, 9, radius=lambda i: radius.get(i, 8.0))) == [
        6,
        7,
        8,
        9,
    ]


def test_a_shorter_rewalk_clears_what_the_older_one_left_beyond():
    track = _track(5)
    _run(track, 5, 1, Scripted(2, 9))
    assert max(track.masks) == 9
    # the anchor corrected: slice 6 now comes out smaller and the object ends after it
    track.masks[5], track.versions[5] = SliceMask.of(_disk(7.5), 0.95), 1
    assert _run(track, 5, 1, Scripted(2, 6, radius=lambda index: 7.0)) == [6]
    assert sorted(track.masks) == [5, 6]


def test_walks_stop_at_other_anchors_and_at_slices_a_nearer_anchor_reached():
    track = _track(2)
    track.prompts[9] = None
    track.masks[9] = SliceMask.of(_disk(8), 0.95)
    track.masks[8] = SliceMask.of(_disk(6), 0.9, anchor=9)  # reached from 9 before
    predict = Scripted(0, 11, radius=lambda index: 7.0)
    assert _run(track, 2, 1, predict) == [3, 4, 5, 6, 7]  # not 8 (nearer to 9), not 9
    assert track.masks[8].anchor == 9 and track.masks[8].area == _disk(6).sum()


def test_a_correction_stops_where_the_result_no_longer_changes():
    track = _track(5)
    _run(track, 5, 1, Scripted(0, 11))  # slices 6..11 from anchor 5
    track.prompts[7] = None  # a correction on slice 7, same object
    track.masks[7] = SliceMask.of(_disk(8), 0.97)
    predict = Scripted(0, 11)
    assert _run(track, 7, 1, predict) == [8]  # slice 8 is what it was: stop
    assert predict.calls == [8]
    assert track.masks[8].anchor == 7 and track.masks[9].anchor == 5


def test_a_cancelled_walk_resumes_without_the_model():
    track, predict = _track(5), Scripted(0, 11)
    steps = walk(track, 5, 1, 12, HW, predict, ProjectionRules())
    assert [next(steps), next(steps)] == [6, 7]
    steps.close()  # cancelled
    assert sorted(track.masks) == [5, 6, 7]
    predict.calls.clear()
    assert _run(track, 5, 1, predict) == [6, 7, 8, 9, 10, 11]
    assert predict.calls == [8, 9, 10, 11]  # 6 and 7 taken as stored


def test_overlaps_go_to_the_higher_score_and_prompted_slices_win():
    low, high = Track(1), Track(2)
    low.masks[0] = SliceMask.of(_disk(8), 0.9, anchor=3)
    high.masks[0] = SliceMask.of(_disk(8, centre=(20, 26)), 0.95, anchor=4)
    painted = paint_slice([low, high], 0, HW)
    assert painted[20, 24] == 2 and painted[20, 14] == 1
    low.masks[0] = SliceMask.of(_disk(8), 0.5, anchor=None)  # prompted there
    assert paint_slice([low, high], 0, HW)[20, 24] == 1


def test_slice_masks_are_stored_cropped_and_restored_exactly():
    mask = _disk(6, centre=(10, 30))
    stored = SliceMask.of(mask, 0.8)
    assert stored.crop.shape == (13, 13) and stored.top_left_yx == (4, 24)
    np.testing.assert_array_equal(stored.full(HW), mask)
    assert SliceMask.of(np.zeros(HW, bool), 0.1).area == 0
