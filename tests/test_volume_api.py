"""``SegAny.open_volume``: prompt an object on one slice, propagate it through the stack
(the built-in model, projection), correct it, cancel, and refuse bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_segany import SegAny
from napari_segany.core.errors import ImageError, InputError, PromptError
from napari_segany.core.progress import Progress


@pytest.fixture(scope="module")
def session():
    return SegAny("builtin", device="cpu")


def _ellipsoids(shape=(12, 96, 96), seed=0):
    """Two bright nuclei (one spanning slices 2-9, one 5-11) on a noisy background,
    and their labels."""
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(np.float64)
    labels = np.zeros(shape, np.uint16)
    for index, (centre, semi) in enumerate(
        [((5.5, 34, 30), (4.2, 14, 11)), ((8.0, 62, 66), (3.6, 12, 14))], start=1
    ):
        rho = sum(((a - c) / s) ** 2 for a, c, s in zip((zz, yy, xx), centre, semi))
        labels[rho <= 1] = index
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter((labels > 0) * 1000.0, (0.5, 1.5, 1.5))
    return (200 + image + rng.normal(0, 40, shape)).clip(0).astype(np.uint16), labels


def _middle_click(truth: np.ndarray) -> tuple[int, list]:
    """The truth's middle slice and its most interior pixel."""
    slices = np.flatnonzero(truth.any((1, 2)))
    index = int(slices[len(slices) // 2])
    depth = ndimage.distance_transform_edt(truth[index])
    return index, [list(np.unravel_index(int(np.argmax(depth)), depth.shape))]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_one_click_per_object_propagates_both_ways(session):
    stack, truth = _ellipsoids()
    volume = session.open_volume(stack)
    for obj_id in (1, 2):
        index, point = _middle_click(truth == obj_id)
        result = volume.prompt(obj_id, index, points_yx=point, labels=[1])
        assert result.masks.shape == (1, 96, 96) and result.scores.shape == (1,)
        assert _iou(result.masks[0], truth[index] == obj_id) > 0.7
    reports: list[Progress] = []
    labels = volume.propagate(on_progress=reports.append)
    assert labels.shape == truth.shape and labels.dtype == np.uint32
    assert reports[-1].done == reports[-1].total
    for obj_id in (1, 2):
        found, wanted = labels == obj_id, truth == obj_id
        assert _iou(found, wanted) > 0.6
        # it reached slices on both sides of the click and did not run off the object
        assert set(np.flatnonzero(found.any((1, 2)))) <= set(range(1, 12))
        assert found.any((1, 2)).sum() >= 0.6 * wanted.any((1, 2)).sum()
    np.testing.assert_array_equal(volume.labels, labels)


def test_a_correction_rewalks_from_its_slice_only_and_remove_forgets(session, monkeypatch):
    stack, truth = _ellipsoids()
    volume = session.open_volume(stack)
    index, point = _middle_click(truth == 1)
    volume.prompt(1, index, points_yx=point, labels=[1])
    before = volume.propagate()
    walked = []
    predict = volume._predict
    monkeypatch.setattr(volume, "_predict", lambda i, p: walked.append(i) or predict(i, p))
    assert np.array_equal(volume.propagate(), before) and walked == []  # nothing changed
    corrected = index + 2
    result = volume.prompt(1, corrected, points_yx=[point[0]], labels=[1])
    after = volume.propagate()
    assert 1 <= len(walked) <= 12 - corrected  # outward from slice `corrected` only
    assert all(i > corrected or i < corrected for i in walked)
    np.testing.assert_array_equal(after[corrected] == 1, result.masks[0])
    np.testing.assert_array_equal(after[: index + 1] == 1, before[: index + 1] == 1)
    volume.remove(1)
    assert volume.object_ids == [] and not volume.labels.any()


def test_a_negative_click_on_a_propagated_slice_keeps_the_derived_point_away():
    from napari_segany.core.volume import ProjectionRules, SlicePrompt
    from napari_segany.volume_api import _with_mask

    stored = np.zeros((40, 40), bool)
    stored[10:30, 10:30] = True
    given = SlicePrompt(np.array([[19.5, 19.5]]), np.array([0]), None)
    prompt = _with_mask(given, stored, ProjectionRules())
    (derived, *_), labels = prompt["points_yx"], prompt["labels"]
    assert list(labels) == [1, 0] and np.hypot(*(derived - 19.5)) > 3
    assert prompt["box_yxyx"] is None  # the default rules prompt with points only
    prompt = _with_mask(given, stored, ProjectionRules(prompt="box"))
    assert tuple(prompt["box_yxyx"]) == (7, 7, 33, 33)  # the box, grown 15 % of 20 px
    assert list(prompt["labels"]) == [1, 0]  # and still the point inside
    with pytest.raises(InputError, match="prompt must be"):
        ProjectionRules(prompt="mask")


def test_cancel_keeps_the_finished_slices_whole(session):
    stack, truth = _ellipsoids()
    volume = session.open_volume(stack)
    index, point = _middle_click(truth == 1)
    volume.prompt(1, index, points_yx=point, labels=[1])
    steps, walked = volume.propagation(), 0
    for report in steps:
        walked += report.message == "object 1"  # one report per slice done
        if walked == 2:
            break
    steps.close()  # cancelled after two slices
    assert (volume.labels == 1).any((1, 2)).sum() == 3  # the prompted slice + 2
    assert (volume.propagate() == 1).any((1, 2)).sum() > 3  # the rest on the next run


def test_max_slices_limits_a_walk_and_a_later_run_goes_on(session, monkeypatch):
    stack, truth = _ellipsoids()
    volume = session.open_volume(stack)
    index, point = _middle_click(truth == 1)
    volume.prompt(1, index, points_yx=point, labels=[1])
    limited = volume.propagate(max_slices=1)
    assert np.flatnonzero((limited == 1).any((1, 2))).tolist() == [index - 1, index, index + 1]
    predicted = []
    original = volume._predict
    monkeypatch.setattr(volume, "_predict", lambda i, p: predicted.append(i) or original(i, p))
    full = volume.propagate()
    assert (full == 1).any((1, 2)).sum() > 3
    assert index - 1 not in predicted and index + 1 not in predicted  # resumed, not redone
    with pytest.raises(InputError, match="max_slices"):
        volume.propagate(max_slices=0)


def test_bad_input_is_refused_and_changes_nothing(session):
    stack, truth = _ellipsoids(shape=(4, 48, 48))
    with pytest.raises(ImageError, match="axes"):
        session.open_volume(stack[0])
    with pytest.raises(ImageError, match="axes"):
        session.open_volume(stack[None, None])
    with pytest.raises(ImageError, match="axis 3"):
        session.open_volume(np.zeros((4, 48, 48, 3), np.uint8), axis=3)
    volume = session.open_volume(stack)
    for index in (4, -1, 1.5):
        with pytest.raises(PromptError, match="not a slice of the stack"):
            volume.prompt(1, index, points_yx=[[10, 10]], labels=[1])
    with pytest.raises(PromptError):
        volume.prompt(1, 0, points_yx=[[60, 10]], labels=[1])  # outside the slice
    for bad in (0, -2, 1.5, True):
        with pytest.raises(InputError, match="positive integer"):
            volume.prompt(bad, 0, points_yx=[[10, 10]], labels=[1])
    with pytest.raises(InputError, match="No object 3"):
        volume.propagate(obj_ids=[3])
    with pytest.raises(InputError, match="direction"):
        volume.propagate(direction="up")
    assert volume.object_ids == [] and not volume.labels.any()


def test_any_axis_and_lazy_arrays(session):
    dask_array = pytest.importorskip("dask.array")
    stack, truth = _ellipsoids(shape=(6, 64, 64))
    moved = dask_array.from_array(np.moveaxis(stack, 0, 2), chunks=(64, 64, 1))
    volume = session.open_volume(moved, axis=2)
    assert volume.n_slices == 6 and volume.hw == (64, 64)
    np.testing.assert_array_equal(volume.plane(3), stack[3])
