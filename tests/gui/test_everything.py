"""Everything mode in the widget, in a real viewer (Xvfb): fake blobs and a tiny SAM."""

import numpy as np
import pytest
from tests.fakes import tiny_session
from tests.gui.everything_fakes import BlobSession, blob_plane

from napari_segany._qt.widget import EVERYTHING, SegAnyWidget

pytestmark = pytest.mark.gui
OPEN = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def _set(widget, points=None, iou=None, stability=None):
    panel = widget.everything
    if points is not None:
        panel.points_spin.setValue(points)
    if iou is not None:
        panel.iou_spin.setValue(iou)
    if stability is not None:
        panel.stability_spin.setValue(stability)


def test_defaults_are_sams(viewer_widget):
    _, widget, _ = viewer_widget(np.zeros((20, 20), np.uint8))
    panel = widget.everything
    assert panel.grid_params() == {"points_per_side": 32, "use_m2m": False}
    assert panel.filter_params() == {
        "pred_iou_thresh": 0.88,
        "stability_score_thresh": 0.95,
        "box_nms_thresh": 0.7,
        "min_mask_region_area": 0,
    }
    assert panel.link_box.isChecked() and panel.target_combo.currentText() == "new layer"


def test_threshold_change_reapplies_without_decoding_again(viewer_widget):
    session = BlobSession()
    viewer, widget, _ = viewer_widget(blob_plane(), session=session)
    widget.segment_everything()  # Shift-E
    layer = viewer.layers[EVERYTHING]
    assert np.unique(layer.data).tolist() == [0, 1]  # only the bright blob (score 1 > 0.88)
    assert layer.data[12, 14] == 1 and layer.data[32, 44] == 0
    assert len(session.decode_calls) == 1
    _set(widget, iou=0.4)
    assert widget.everything.timer.isActive()  # debounced ...
    widget.everything.timer.stop()
    widget.everything.reselect()  # ... as when the timer fires
    assert len(session.decode_calls) == 1  # no new decoding
    assert layer.data[12, 14] > 0 and layer.data[32, 44] > 0
    assert layer.data[12, 14] != layer.data[32, 44]
    assert "2 objects" in widget.everything.summary.text()
    layer.undo()  # the re-selection is one undo step
    assert layer.data[32, 44] == 0 and layer.data[12, 14] == 1


def test_existing_labels_are_never_overwritten(viewer_widget):
    viewer, widget, _ = viewer_widget(blob_plane(), session=BlobSession())
    mine = viewer.add_labels(np.zeros((48, 64), np.int32), name="mine")
    mine.data[10:15, 10:30] = 7  # covers part of the bright blob
    before = mine.data.copy()
    widget.everything.target_combo.setCurrentText("mine")
    _set(widget, iou=0.4)
    widget.segment_everything()
    assert EVERYTHING not in viewer.layers
    kept = before > 0
    np.testing.assert_array_equal(mine.data[kept], before[kept])  # user labels untouched
    new_ids = np.unique(mine.data[~kept & (mine.data > 0)])
    assert len(new_ids) == 2 and new_ids.min() > 7  # fresh ids above the user's
    assert mine.data[32, 44] in new_ids and mine.data[16, 14] in new_ids
    mine.undo()
    np.testing.assert_array_equal(mine.data, before)
    mine.redo()
    mine.data[0, 0] = 3  # the user edits the layer: thresholds must not rewrite it
    _set(widget, iou=0.8)
    widget.everything.reselect()
    assert mine.data[32, 44] in new_ids and mine.data[0, 0] == 3


def test_new_runs_reuse_the_everything_layer_with_unique_ids(viewer_widget):
    stack = np.stack([blob_plane(), blob_plane()[:, ::-1]])
    viewer, widget, _ = viewer_widget(stack, session=BlobSession())
    _set(widget, iou=0.4)
    for z in (0, 1):
        viewer.dims.set_point(0, z)
        widget.segment_everything()
    labels = viewer.layers[EVERYTHING].data
    assert [layer.name for layer in viewer.layers].count(EVERYTHING) == 1
    assert set(np.unique(labels[0])) == {0, 1, 2} and set(np.unique(labels[1])) == {0, 3, 4}


def test_whole_stack_links_objects_and_reselects_every_plane(viewer_widget):
    stack = np.stack([blob_plane(), blob_plane(), np.zeros((48, 64), np.uint8), blob_plane()])
    session = BlobSession()
    viewer, widget, _ = viewer_widget(stack, session=session)
    widget.segment_everything_stack()
    labels = viewer.layers[EVERYTHING].data
    assert labels.shape == stack.shape and len(session.decode_calls) == 4
    bright = labels[:, 12, 14]
    assert bright[0] == bright[1] > 0 and bright[2] == 0 and bright[3] not in (0, bright[0])
    widget.everything.link_box.setChecked(False)  # re-assembled without the model
    widget.everything.reselect()
    assert len(set(labels[[0, 1, 3], 12, 14])) == 3 and len(session.decode_calls) == 4


def test_tiny_model_slice_and_stack_equal_the_api(viewer_widget, monkeypatch):
    from napari_segany._sample_data import make_nuclei_3d

    session = tiny_session()
    stack = make_nuclei_3d()[:3, :64, :80]
    viewer, widget, image = viewer_widget(stack, session=session)
    calls = []
    decode = session.predictor.model.decode
    monkeypatch.setattr(
        session.predictor.model, "decode", lambda *a, **k: calls.append(1) or decode(*a, **k)
    )
    _set(widget, points=4, iou=0.0, stability=0.0)
    viewer.dims.set_point(0, 1)
    widget.segment_everything()
    limits = tuple(image.contrast_limits)
    session.set_image(stack[1], contrast_limits=limits)
    expected = session.segment_everything(points_per_side=4, **OPEN).labels
    np.testing.assert_array_equal(viewer.layers[EVERYTHING].data[1], expected)
    assert expected.any() and viewer.layers[EVERYTHING].data[[0, 2]].max() == 0
    decoded = len(calls)
    _set(widget, iou=0.02)
    widget.everything.reselect()
    assert len(calls) == decoded  # thresholds without the model
    session.set_image(stack[1], contrast_limits=limits)
    expected = session.segment_everything(
        points_per_side=4, pred_iou_thresh=0.02, stability_score_thresh=0.0
    ).labels
    np.testing.assert_array_equal(viewer.layers[EVERYTHING].data[1], expected)
    widget.segment_everything_stack()
    result = session.segment_everything_stack(
        stack,
        contrast_limits=limits,
        link=True,
        points_per_side=4,
        pred_iou_thresh=0.02,
        stability_score_thresh=0.0,
    )
    assert result.labels.any()
    np.testing.assert_array_equal(viewer.layers[EVERYTHING].data, result.labels)


def test_the_m2m_box_runs_the_refinement_as_the_api(viewer_widget):
    from napari_segany._sample_data import make_nuclei_3d

    session = tiny_session()
    plane = make_nuclei_3d()[1, :64, :80]
    viewer, widget, image = viewer_widget(plane, session=session)
    _set(widget, points=4, iou=0.0, stability=0.0)
    widget.everything.m2m_box.setChecked(True)
    assert widget.everything.grid_params() == {"points_per_side": 4, "use_m2m": True}
    widget.segment_everything()
    session.set_image(plane, contrast_limits=tuple(image.contrast_limits))
    refined = session.segment_everything(points_per_side=4, use_m2m=True, **OPEN).labels
    plain = session.segment_everything(points_per_side=4, **OPEN).labels
    np.testing.assert_array_equal(viewer.layers[EVERYTHING].data, refined)
    assert refined.any() and not np.array_equal(refined, plain)


def test_no_model_and_empty_result_are_notifications(viewer_widget, notes):
    viewer, widget, _ = viewer_widget(np.zeros((30, 30), np.uint8))
    widget.segment_everything()  # DiscSession: no everything mode
    assert "no everything mode" in notes.text() and EVERYTHING not in viewer.layers
    widget.segany = None
    widget.segment_everything()
    assert "Load a model first" in notes.text()


@pytest.fixture
def threaded(make_napari_viewer, qtbot, monkeypatch):
    """``make(data, session) -> (viewer, widget)`` with real worker threads."""
    monkeypatch.delenv("SEGANY_NOTHREADS", raising=False)
    viewer = make_napari_viewer()
    made = []

    def make(data, session):
        viewer.add_image(data)
        widget = SegAnyWidget(viewer)
        widget.use_session(session)
        qtbot.waitUntil(lambda: widget.segany is session, timeout=10_000)
        made.append(widget)
        return viewer, widget

    yield make
    for widget in made:
        qtbot.waitUntil(widget.idle, timeout=10_000)


def test_slice_change_during_a_run_does_not_misplace_results(threaded, qtbot):
    stack = np.stack([blob_plane()[:, ::-1], blob_plane(), blob_plane()[::-1]])
    session = BlobSession(step_seconds=0.1)
    viewer, widget = threaded(stack, session)
    viewer.dims.set_point(0, 1)
    _set(widget, iou=0.4)
    widget.segment_everything()
    viewer.dims.set_point(0, 2)  # the user moves on during the run
    qtbot.waitUntil(widget.idle, timeout=10_000)
    labels = viewer.layers[EVERYTHING].data
    assert labels[1, 12, 14] > 0 and labels[1, 32, 44] > 0
    assert labels[[0, 2]].max() == 0
    assert session.decode_calls == [float(stack[1].sum())]


def test_cancel_stops_a_stack_run_and_writes_nothing(threaded, qtbot):
    stack = np.stack([blob_plane()] * 5)
    session = BlobSession(step_seconds=0.1)
    viewer, widget = threaded(stack, session)
    widget.segment_everything_stack()
    qtbot.waitUntil(lambda: session.steps_done >= 2, timeout=10_000)
    widget.cancel()
    qtbot.waitUntil(widget.idle, timeout=10_000)  # the worker has returned
    assert session.steps_done < 8 and len(session.decode_calls) <= 1  # 20 steps in all
    assert EVERYTHING not in viewer.layers and widget.controls.status.text() == "cancelled"
    widget.everything.box.setChecked(True)  # open the group: its buttons are usable again
    assert widget.everything.slice_button.isEnabled()


def test_cancel_stops_the_embedding_inside_the_encoder(threaded, qtbot):
    import time

    session = tiny_session()
    blocks = session.predictor.model.image_encoder.blocks
    ran = []
    for number, block in enumerate(blocks):
        block.register_forward_hook(lambda *_, n=number: ran.append(n) or time.sleep(0.5))
    viewer, widget = threaded(np.zeros((32, 32), np.uint8), session)  # plane 1 embedded
    ran.clear()
    viewer.add_image(np.ones((32, 32), np.uint8), name="other")
    widget.controls.image_combo.setCurrentText("other")
    widget.use_session(session)  # embeds "other" in the background
    qtbot.waitUntil(lambda: ran == [0], timeout=10_000)
    widget.cancel()
    qtbot.waitUntil(lambda: widget._job.finished, timeout=10_000)
    assert ran == [0] and len(blocks) == 2  # block 1 never ran
    assert len(session.cache) == 1  # the cancelled plane was not cached
    assert all(not block._forward_pre_hooks for block in blocks)  # hooks removed


def test_deleting_the_image_during_a_run_is_a_notification(threaded, qtbot, notes):
    session = BlobSession(step_seconds=0.1)
    viewer, widget = threaded(blob_plane(), session)
    widget.segment_everything()
    viewer.layers.remove(viewer.layers[0])  # the image
    qtbot.waitUntil(lambda: "was deleted during everything mode" in notes.text(), timeout=10_000)
    assert EVERYTHING not in viewer.layers


def test_a_model_with_an_instance_decoder_offers_ais_with_its_own_thresholds(viewer_widget):
    import torch
    from tests.fakes import tiny_architecture
    from tests.oracle.upstream import randomize_

    from napari_segany.api import SegAny
    from napari_segany.core.model.build import build_sam
    from napari_segany.core.model.instance_decoder import InstanceDecoder

    sam = build_sam(tiny_architecture(), image_size=256)
    sam.instance_decoder = randomize_(InstanceDecoder(embed_dim=32, features=8), seed=4, scale=0.2)
    torch.manual_seed(0)
    session = SegAny.from_model(sam, name="tiny-with-decoder")
    viewer, widget, image = viewer_widget(blob_plane(), session=session)
    panel = widget.everything
    panel.box.setChecked(True)
    assert panel.proposals_combo.currentText() == "ais (auto)"  # "auto" picks it, and says so
    assert panel.filter_params()["pred_iou_thresh"] == 0.0  # micro-sam keeps every object
    assert not panel.points_spin.isVisible()  # the grid's own rows are hidden
    widget.segment_everything()
    session.set_image(blob_plane(), contrast_limits=tuple(image.contrast_limits))
    expected = session.segment_everything(mode="ais").labels
    assert expected.max() > 1
    np.testing.assert_array_equal(viewer.layers[EVERYTHING].data, expected)
    panel.proposals_combo.setCurrentIndex(panel.proposals_combo.findData("grid"))
    assert panel.filter_params()["pred_iou_thresh"] == 0.88  # the grid's: SAM's
    # APG: its own rows and defaults (min_size 25 where AIS has 0); a run is the API's
    panel.proposals_combo.setCurrentIndex(panel.proposals_combo.findData("apg"))
    assert panel.grid_params() == {
        "foreground_threshold": 0.5,
        "center_distance_threshold": 0.5,
        "boundary_distance_threshold": 0.5,
        "min_size": 25,
        "nms_threshold": 0.9,
        "box_refinement": False,
        "multimask": False,
    }
    panel.rows["nms_threshold"][1].setValue(0.5)
    panel.rows["min_size"][1].setValue(3)
    widget.segment_everything()
    expected = session.segment_everything(mode="apg", nms_threshold=0.5, min_size=3).labels
    assert expected.max() > 1
    np.testing.assert_array_equal(viewer.layers[EVERYTHING].data, expected)
    panel.proposals_combo.setCurrentIndex(panel.proposals_combo.findData("ais"))
    assert panel.grid_params()["min_size"] == 0 and "nms_threshold" not in panel.grid_params()
    assert not panel.rows["foreground_smoothing"][1].isHidden()
