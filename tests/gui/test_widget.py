"""The dock widget in a real napari viewer (Xvfb): masks land where the user clicked."""

import time

import numpy as np
import pytest
from tests.fakes import DiscSession

from napari_segany._qt.widget import LABELS, PROMPTS, SegAnyWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer_widget(make_napari_viewer, monkeypatch):
    monkeypatch.setenv("SEGANY_NOTHREADS", "1")
    viewer = make_napari_viewer()

    def make(data, **kwargs):
        layer = viewer.add_image(data, **kwargs)
        widget = SegAnyWidget(viewer)
        viewer.window.add_dock_widget(widget)
        widget.use_session(DiscSession())
        return viewer, widget, layer

    return make


def test_click_in_3d_stack_with_scale_translate_lands_on_that_plane(viewer_widget):
    viewer, widget, image = viewer_widget(
        np.zeros((6, 40, 50), np.uint16), scale=(3.0, 0.5, 0.5), translate=(100.0, 10.0, 0.0)
    )
    viewer.dims.set_point(0, 100.0 + 3.0 * 4)  # world z of plane 4
    prompts = viewer.layers[PROMPTS]
    assert tuple(prompts.scale) == tuple(image.scale)
    prompts.add(np.array([[4, 20, 30]]))  # data coordinates (z, y, x)
    widget.segment()
    labels = viewer.layers[LABELS].data
    assert labels.shape == image.data.shape
    assert np.unique(labels[4][labels[4] > 0]).tolist() == [1]
    ys, xs = np.nonzero(labels[4])
    assert (round(ys.mean()), round(xs.mean())) == (20, 30)
    assert labels[[0, 1, 2, 3, 5]].max() == 0
    assert len(prompts.data) == 0  # prompts cleared after commit


def test_rgb_image_labels_are_2d_and_commit_never_overwrites(viewer_widget):
    viewer, widget, _ = viewer_widget(np.zeros((30, 30, 3), np.uint8), rgb=True)
    widget.controls.route_box.setChecked(False)  # a click on object 1 makes a new object
    viewer.layers[PROMPTS].add(np.array([[10, 10]]))
    widget.segment()
    viewer.layers[PROMPTS].add(np.array([[13, 10]]))  # overlaps object 1
    widget.segment()
    labels = viewer.layers[LABELS].data
    assert labels.shape == (30, 30)
    assert labels[10, 10] == 1 and labels[13, 10] == 1  # object 1 kept its pixels
    assert labels[17, 10] == 2  # object 2 only took background
    viewer.layers[LABELS].undo()  # Ctrl+Z on the labels layer removes object 2 only
    after_undo = viewer.layers[LABELS].data
    assert after_undo[17, 10] == 0 and after_undo[10, 10] == 1


def test_embedding_runs_in_background_and_event_loop_keeps_ticking(
    make_napari_viewer, qtbot, monkeypatch
):
    monkeypatch.delenv("SEGANY_NOTHREADS", raising=False)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8))
    widget = SegAnyWidget(viewer)
    session = DiscSession(embed_seconds=1.5)
    ticks = []
    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    widget.use_session(session)
    qtbot.waitUntil(lambda: widget.segany is session, timeout=10_000)
    timer.stop()
    assert session.embed_threads and session.embed_threads[0] != "MainThread"
    gaps = np.diff(ticks)
    assert len(ticks) > 30 and gaps.max() < 0.2
