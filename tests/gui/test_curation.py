"""Curation in a real viewer: clicks routed to objects, delete/merge/split/refine,
undo/redo across slices, a renamed layer, save with provenance that replays."""

import numpy as np
import pytest
from scipy import ndimage

from napari_segany import SegAny, load_labels
from napari_segany._qt import _dialogs
from napari_segany._qt.widget import PREVIEW, PROMPTS
from napari_segany.core.synthetic import generate_scene, interior_point_yx
from napari_segany.curation import replay
from napari_segany.saving import sidecar_path

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def builtin():
    return SegAny("builtin", device="cpu", precision="fp32")


@pytest.fixture
def curating(viewer_widget, builtin):
    """A 2-slice nuclei stack and an existing Labels layer ('cellpose') of its objects,
    the largest object of slice 0 eroded by 4 pixels, picked as the target."""
    scenes = [generate_scene(np.random.default_rng(s), (192, 192), "nuclei", radius=11.0)
              for s in (21, 22)]  # fmt: skip
    image = np.stack([_scaled(s.image) for s in scenes])  # one intensity range
    truth = np.stack([s.labels for s in scenes]).astype(np.int32)
    limits = tuple(float(v) for v in np.percentile(image, [0.5, 99.8]))  # as a user sets them
    viewer, widget, layer = viewer_widget(image, session=builtin, contrast_limits=limits)
    start = truth.copy()
    big = _largest(truth[0])
    start[0][(truth[0] == big) & ~ndimage.binary_erosion(truth[0] == big, iterations=4)] = 0
    start[1][truth[1] == _largest(truth[1], 4)] = 0  # a nucleus the other tool missed
    labels = viewer.add_labels(start.copy(), name="cellpose")
    widget.controls.target_combo.setCurrentText("cellpose")
    return viewer, widget, labels, truth, start, big


def _scaled(plane: np.ndarray) -> np.ndarray:
    low, high = np.percentile(plane, [0.5, 99.8])
    return (np.clip((plane - low) / (high - low), 0, 1) * 1000).astype(np.uint16)


def _largest(plane: np.ndarray, rank: int = 0) -> int:
    ids, areas = np.unique(plane[plane > 0], return_counts=True)
    return int(ids[np.argsort(-areas)][rank])


def _click(viewer, widget, z, yx, positive=True):
    points = viewer.layers[PROMPTS]
    points.feature_defaults["positive"] = positive
    points.add([z, *yx])
    widget.prompts.timer.stop()
    widget.prompts.refresh()


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_a_click_inside_an_object_corrects_it_and_a_click_outside_adds_one(curating):
    viewer, widget, labels, truth, start, big = curating
    viewer.dims.set_point(0, 0)
    inside = interior_point_yx(start[0] == big, edge_is_background=False)
    _click(viewer, widget, 0, inside)
    assert widget.prompts.preview.obj_id == big
    assert widget.controls.candidate_label.text() == f"correcting object {big}"
    assert (viewer.layers[PREVIEW].data[0] > 0).sum() > (start[0] == big).sum()
    widget.commit()
    assert _iou(labels.data[0] == big, truth[0] == big) > _iou(start[0] == big, truth[0] == big)
    others = (start != 0) & (start != big)
    np.testing.assert_array_equal(labels.data[others], start[others])  # no other id touched
    missed = truth[1] == _largest(truth[1], 4)
    viewer.dims.set_point(0, 1)
    y, x = interior_point_yx(missed, edge_is_background=False)
    _click(viewer, widget, 1, (y, x))
    assert widget.prompts.preview.obj_id is None  # on background: a new object
    widget.commit()
    new_id = int(labels.data[1, y, x])
    assert new_id > start.max() and _iou(labels.data[1] == new_id, missed) > 0.6


def test_delete_merge_split_refine_then_undo_and_redo_across_slices(curating):
    viewer, widget, labels, truth, start, big = curating
    states = [labels.data.copy()]
    a, b = _largest(truth[1], 1), _largest(truth[1], 2)
    viewer.dims.set_point(0, 1)
    for obj in (a, b):
        _click(viewer, widget, 1, interior_point_yx(truth[1] == obj, edge_is_background=False))
    widget.curation.merge()
    assert not (labels.data[1] == max(a, b)).any() and len(viewer.layers[PROMPTS].data) == 0
    states.append(labels.data.copy())
    victim = _largest(truth[1], 3)
    _click(viewer, widget, 1, interior_point_yx(truth[1] == victim, edge_is_background=False))
    widget.delete_objects()
    assert not (labels.data[1] == victim).any()  # on the shown slice only
    np.testing.assert_array_equal(labels.data[0], states[-1][0])
    states.append(labels.data.copy())
    viewer.dims.set_point(0, 0)
    widget.curation.refine()  # no points: every object of slice 0
    assert "objects in 'cellpose'" in widget.controls.status.text()
    states.append(labels.data.copy())
    labels.selected_label = 99
    labels.paint((0, 5, 5), 99)  # a brush stroke is a step too
    states.append(labels.data.copy())
    labels.name = "renamed"  # the history belongs to the layer, not to its name
    assert widget.controls.target_combo.currentText() == "renamed"
    for state in reversed(states[:-1]):
        widget.undo()
        np.testing.assert_array_equal(labels.data, state)
    for state in states[1:]:
        widget.redo()
        np.testing.assert_array_equal(labels.data, state)


def test_split_at_a_negative_click_gives_the_part_a_new_id(curating):
    viewer, widget, labels, truth, start, big = curating
    a = _largest(truth[1])
    ring = ndimage.binary_dilation(truth[1] == a, iterations=2) & (truth[1] != a)
    b = int(np.unique(truth[1][ring & (truth[1] > 0)])[0])
    labels.data[1][labels.data[1] == b] = a  # two touching nuclei under one id
    viewer.dims.set_point(0, 1)
    _click(viewer, widget, 1, interior_point_yx(truth[1] == b, edge_is_background=False), False)
    widget.curation.split()
    new = int(labels.data.max())
    assert new > truth.max() and "split object" in widget.controls.status.text()
    assert _iou(labels.data[1] == new, truth[1] == b) > 0.6


def test_saved_labels_replay_bit_for_bit_with_strokes_and_corrections(
    curating, tmp_path, monkeypatch, builtin
):
    viewer, widget, labels, truth, start, big = curating
    viewer.dims.set_point(0, 0)
    _click(viewer, widget, 0, interior_point_yx(start[0] == big, edge_is_background=False))
    widget.commit()
    labels.selected_label = 7
    labels.paint((1, 40, 40), 7)
    viewer.dims.set_point(0, 1)
    _click(viewer, widget, 1, interior_point_yx(truth[1] == _largest(truth[1]), False))
    widget.delete_objects()
    widget.undo()
    before_napari_undo = labels.data.copy()
    labels.undo()  # napari's own Ctrl-Z on the layer: takes back the widget's undo
    assert not np.array_equal(labels.data, before_napari_undo)
    monkeypatch.setattr(_dialogs, "ask_save_path", lambda *a: str(tmp_path / "curated.tif"))
    widget.curation.save()
    saved = load_labels(tmp_path / "curated.tif")
    np.testing.assert_array_equal(saved, labels.data)
    image = viewer.layers[widget.controls.image_combo.currentText()].data
    again = replay(sidecar_path(tmp_path / "curated.tif"), image, start_labels=start,
                   segany=builtin)  # fmt: skip
    assert again.identical
    np.testing.assert_array_equal(again.labels, saved)
    monkeypatch.setattr(_dialogs, "ask_save_path", lambda *a: str(tmp_path / "objects.csv"))
    widget.curation.export()
    rows = (tmp_path / "objects.csv").read_text().splitlines()
    assert len(rows) - 1 == sum(len(np.unique(p[p > 0])) for p in saved)
