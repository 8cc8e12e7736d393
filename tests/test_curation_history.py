"""The object-level history: changed pixels only, undo/redo across planes, bounds."""

import numpy as np

from napari_segany.curation.history import LabelsHistory, Step, plane_change


def _edit(history, labels, index, region, value, action="add"):
    before = labels[index].copy()
    labels[index][region] = value
    return history.record(labels, action, {"ids": [value]}, [(index, before)])


def test_undo_and_redo_across_planes_restore_each_state_exactly():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(3, 20, 30)).astype(np.uint16)
    history = LabelsHistory()
    states = [labels.copy()]
    edits = [((0,), np.s_[2:9, 3:12], 7), ((2,), np.s_[10:, :5], 8), ((0,), np.s_[5:15, 5:25], 0)]
    for index, region, value in edits:
        _edit(history, labels, index, region, value)
        states.append(labels.copy())
    for state in reversed(states[:-1]):
        history.undo(labels)
        np.testing.assert_array_equal(labels, state)
    assert history.undo(labels) is None and not history.can_undo()
    for state in states[1:]:
        history.redo(labels)
        np.testing.assert_array_equal(labels, state)
    assert history.redo(labels) is None


def test_a_new_step_clears_redo_and_an_unchanged_step_is_not_kept():
    labels = np.zeros((10, 10), np.uint8)
    history = LabelsHistory()
    _edit(history, labels, (), np.s_[:3, :3], 1)
    history.undo(labels)
    assert history.can_redo()
    _edit(history, labels, (), np.s_[5:, 5:], 2)
    assert not history.can_redo() and len(history.steps) == 1
    assert _edit(history, labels, (), np.s_[5:, 5:], 2) is None  # nothing changed
    assert len(history.steps) == 1


def test_pixels_changed_since_by_other_means_are_spared_by_undo():
    labels = np.zeros((10, 10), np.int32)
    history = LabelsHistory()
    _edit(history, labels, (), np.s_[2:6, 2:6], 5)
    labels[2:4, 2:4] = 9  # the user painted over part of the object
    step, spared = history.undo(labels)
    assert spared == 4 and step.action == "add"
    assert (labels[2:4, 2:4] == 9).all() and labels.sum() == 9 * 4  # the rest undone


def test_memory_holds_changed_pixels_only_and_drops_the_oldest_past_the_bound():
    labels = np.zeros((50, 1000, 1000), np.uint32)  # 200 MB of labels
    history = LabelsHistory(max_bytes=10_000)
    _edit(history, labels, (3,), np.s_[10:20, 10:20], 1)
    assert history.nbytes == 100 * (8 + 4 + 4)  # indices + before + after, 100 pixels
    for value in range(2, 8):
        _edit(history, labels, (value,), np.s_[10:20, 10:20], value)
    assert history.nbytes <= 10_000 and history.dropped == 1
    assert [s.details["ids"] for s in history.steps][0] == [2]


def test_plane_change_and_step_description():
    before = np.zeros((4, 4), np.uint8)
    after = before.copy()
    after[1, 2] = 3
    change = plane_change((2,), before, after)
    assert change.flat.tolist() == [6] and change.before.tolist() == [0]
    assert change.after.tolist() == [3]
    assert plane_change((2,), before, before) is None
    step = Step("merge", {"ids": [3, 4]}, [change])
    assert step.describe() == "merge [3, 4] on 1 plane(s) (1 pixels)"
