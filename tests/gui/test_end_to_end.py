"""The whole widget path on a real (tiny, random-weight) SAM model, and the console."""

import numpy as np
import pytest
from tests.fakes import tiny_session

from napari_segany import scripting
from napari_segany._qt.widget import EVERYTHING, LABELS, PREVIEW, PROMPTS, SegAnyWidget

pytestmark = pytest.mark.gui


def test_tiny_model_click_preview_cycle_commit_and_compute_all(viewer_widget):
    from napari_segany._sample_data import make_nuclei_3d

    session = tiny_session()
    stack = make_nuclei_3d()[:3, :96, :128]
    viewer, widget, image = viewer_widget(stack, session=session, scale=(2.0, 1.0, 1.0))
    assert widget.segany is session and scripting.session_for(viewer) is session
    viewer.dims.set_point(0, 2.0 * 2)
    viewer.layers[PROMPTS].add([2, 40, 60])
    widget.prompts.timer.stop()
    widget.prompts.refresh()
    first = viewer.layers[PREVIEW].data[2].copy()
    assert first.any() and viewer.layers[PREVIEW].data[:2].max() == 0
    assert widget.controls.candidate_label.text().startswith("candidate ")
    widget.next_candidate()
    assert not np.array_equal(viewer.layers[PREVIEW].data[2], first)
    shown = viewer.layers[PREVIEW].data[2] > 0
    widget.commit()
    labels = viewer.layers[LABELS].data
    np.testing.assert_array_equal(labels[2] == 1, shown)  # what was shown is committed
    assert labels[:2].max() == 0
    widget.compute_all_slices()
    assert len(session.cache) == 3 and "3 planes embedded" in widget.controls.status.text()


def test_session_is_offered_to_the_console(make_napari_viewer, monkeypatch):
    monkeypatch.setenv("SEGANY_NOTHREADS", "1")
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 20), np.uint8))
    pushed = {}
    monkeypatch.setattr(type(viewer), "update_console", lambda _self, names: pushed.update(names))
    widget = SegAnyWidget(viewer)
    session = tiny_session()
    widget.use_session(session)
    assert pushed["segany"] is session
    assert pushed["segment_layers"] is scripting.segment_layers


def test_builtin_model_loaded_by_the_widget_commits_the_clicked_nucleus(viewer_widget):
    """The default model, loaded with Load model (no network), finds the right object."""
    from training.evaluate_builtin import best_overlap_iou

    from napari_segany._sample_data import nuclei_scene_2d
    from napari_segany.core.synthetic import interior_point_yx

    scene = nuclei_scene_2d()
    viewer, widget, image = viewer_widget(scene.image, scale=(0.5, 0.5), translate=(10, 20))
    assert widget.controls.model_combo.currentText() == "builtin"
    assert "synthetic" in widget.controls.model_note.text()
    widget.controls.device_combo.setCurrentText("cpu")
    widget.load_model()
    assert widget.segany is not None and widget.segany.model_name == "builtin"
    # everything mode shows the model's calibrated defaults, not SAM's: the objects of
    # its foreground head (the grid size then does not apply), thresholds off
    defaults = widget.segany.everything_defaults
    panel = widget.everything
    assert panel.grid_params() == {
        "points_per_side": defaults["points_per_side"],
        "clicked_component_only": True,
        "proposals": "foreground",
    }
    assert panel.proposals_combo.currentText() == "foreground head"
    panel.box.setChecked(True)  # open the panel (a closed one disables every control)
    assert not panel.points_spin.isEnabled()
    assert panel.zoom_combo.isEnabled() and panel.zoom_combo.currentData() == 0  # auto
    panel.zoom_combo.setCurrentIndex(panel.zoom_combo.findData(2))
    assert panel.grid_params()["head_zoom"] == 2
    panel.proposals_combo.setCurrentIndex(panel.proposals_combo.findData("grid"))
    assert not panel.zoom_combo.isEnabled() and "head_zoom" not in panel.grid_params()
    panel.proposals_combo.setCurrentIndex(panel.proposals_combo.findData("foreground"))
    panel.zoom_combo.setCurrentIndex(panel.zoom_combo.findData(0))
    shown_thresholds = panel.filter_params()
    for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
        assert shown_thresholds[name] == pytest.approx(defaults[name])
    widget.segment_everything()  # Shift-E: the head's objects, written to their own layer
    found = np.asarray(viewer.layers[EVERYTHING].data)
    matched = sum(
        iou > 0.5
        for iou in (best_overlap_iou(found, scene.labels == i) for i in np.unique(scene.labels)[1:])
    )
    assert matched >= 0.8 * scene.labels.max()  # measured 59 of 64 (79 objects kept)
    ids, areas = np.unique(scene.labels[scene.labels > 0], return_counts=True)
    label = int(ids[np.argsort(areas)[len(areas) // 2]])  # a median-sized nucleus
    y, x = interior_point_yx(scene.labels == label, edge_is_background=False)
    viewer.layers[PROMPTS].add([y, x])  # layer data = image pixels (same scale, translate)
    widget.prompts.timer.stop()
    widget.prompts.refresh()
    # The built-in model's best-scored mask is not always the right one (docs/models.md):
    # one of the three candidates (Shift-M cycles them) must be the clicked nucleus.
    for _ in range(3):
        shown = viewer.layers[PREVIEW].data > 0
        hit = scene.labels[shown & (scene.labels > 0)]
        if shown[y, x] and hit.size and np.bincount(hit).argmax() == label:
            break
        widget.next_candidate()
    else:
        pytest.fail(f"no candidate mask is the clicked nucleus at {(y, x)}")
    widget.commit()
    committed = viewer.layers[LABELS].data == 1
    np.testing.assert_array_equal(committed, shown)  # the shown candidate is committed


def test_the_embedding_job_finds_the_head_objects_ahead():
    """So that the first prompt on a plane does not wait for the watershed on the
    main thread (the widget's predictions run there)."""
    import threading

    from napari_segany import SegAny
    from napari_segany._qt._workers import embed_cancellable
    from napari_segany._sample_data import nuclei_scene_2d

    session = SegAny(device="cpu", precision="fp32")
    plane = nuclei_scene_2d().image
    embedding = embed_cancellable(session, plane, None, threading.Event())
    assert [entry[0] for entry in session._objects] == [embedding]
    decoder_only = SegAny(device="cpu", precision="fp32", snap_to_objects=False)
    embed_cancellable(decoder_only, plane, None, threading.Event())
    assert decoder_only._objects == []  # nothing found where nothing snaps


def test_a_cached_plane_finds_its_head_objects_in_the_job_not_the_prompt(
    viewer_widget, monkeypatch
):
    """Planes embedded ahead (Compute all slices) have no head objects yet: the first
    prompt finds them with the plane (so they are zoomed as everything mode's are)
    in the embedding job, not on the main thread in the prediction."""
    from napari_segany import SegAny, _layers
    from napari_segany._sample_data import nuclei_scene_2d

    session = SegAny(device="cpu", precision="fp32")
    plane = nuclei_scene_2d().image
    viewer, widget, image = viewer_widget(plane, session=session)
    limits = _layers.contrast_of(image)
    session.embed(plane, contrast_limits=limits)  # cached (the widget may embed ahead)
    session._objects = []  # as after Compute all slices: objects not found
    assert not session.head_objects_known(plane, limits)
    found_by = []
    find = SegAny.head_objects

    def spy(self, image=None, *args, **kwargs):
        found_by.append("job" if image is not None else "prediction")
        return find(self, image, *args, **kwargs)

    monkeypatch.setattr(SegAny, "head_objects", spy)
    viewer.layers[PROMPTS].add([100, 100])
    widget.prompts.timer.stop()
    widget.prompts.refresh()
    assert found_by[0] == "job" and session.head_objects_known(plane, limits)
    assert viewer.layers[PREVIEW].data.any()
    # the prediction reused them (the plane was passed along with its embedding)
    assert session._source is not None and session._source[0] is plane


def test_the_widgets_everything_mode_zooms_on_the_plane_itself(viewer_widget):
    """On a plane of small nuclei the head's objects come from zoomed tiles (and both
    views) of the plane's own pixels: the widget finds what the API finds (it once
    passed a blank image of the plane's shape, fine for the point grid only)."""
    from napari_segany import SegAny, _layers
    from napari_segany.core.synthetic import generate_scene

    rng = np.random.default_rng(20_000)
    scene = generate_scene(rng, (768, 768), kind="nuclei", radius=4, coverage=0.3, dtype="uint16")
    session = SegAny(device="cpu", precision="fp32")
    viewer, widget, image = viewer_widget(scene.image, session=session)
    widget.segment_everything()
    shown = np.asarray(viewer.layers[EVERYTHING].data)
    session.set_image(scene.image, contrast_limits=_layers.contrast_of(image))
    expected = session.segment_everything()
    assert session._found_objects()[2] >= 3  # the plane is zoomed
    assert len(expected.objects) >= 0.8 * scene.labels.max()  # measured 567 of 593
    np.testing.assert_array_equal(shown > 0, expected.labels > 0)
    assert len(np.unique(shown)) - 1 == len(expected.objects)
