"""The whole widget path on a real (tiny, random-weight) SAM model, and the console."""

import numpy as np
import pytest
from tests.fakes import tiny_session

from napari_segany import scripting
from napari_segany._qt.widget import LABELS, PREVIEW, PROMPTS, SegAnyWidget

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
