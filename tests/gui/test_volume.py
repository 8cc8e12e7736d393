"""*Through the stack* in a real viewer (Xvfb): the built-in model propagates the
objects committed on the shown slice, keeps the user's labels, undoes in one step."""

import time

import numpy as np
import pytest
from tests.test_volume_api import _ellipsoids

from napari_segany import SegAny

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def builtin():
    return SegAny("builtin", device="cpu")


def test_propagate_fills_the_other_slices_around_the_users_labels(viewer_widget, builtin):
    stack, truth = _ellipsoids()
    viewer, widget, image = viewer_widget(stack, session=builtin)
    target = widget.target_labels(image)
    target.data[6][truth[6] == 1] = 1  # the object as committed on slice 6
    target.data[4][truth[4] == 1] = 9  # the user's own label where it will pass
    before = target.data.copy()
    viewer.dims.set_point(0, 6)
    panel = widget.volume
    panel.box.setChecked(True)
    assert panel.axis_combo.count() == 1 and panel.axis_combo.currentData() == 0
    panel.propagate()
    after = np.asarray(target.data)
    reached = [z for z in range(12) if (after[z] == 1).any()]
    assert {5, 7, 8} <= set(reached) and len(reached) <= 9
    np.testing.assert_array_equal(after[4][before[4] == 9], 9)  # never overwritten
    np.testing.assert_array_equal(after[6], before[6])  # the anchor slice as it was
    assert "propagated object 1" in widget.controls.status.text()
    widget.undo_commit()
    np.testing.assert_array_equal(np.asarray(target.data), before)


def test_range_limits_how_far_objects_are_followed(viewer_widget, builtin):
    stack, truth = _ellipsoids()
    viewer, widget, image = viewer_widget(stack, session=builtin)
    target = widget.target_labels(image)
    target.data[6][truth[6] == 1] = 1
    viewer.dims.set_point(0, 6)
    panel = widget.volume
    panel.box.setChecked(True)
    assert panel.range_spin.text() == "whole axis"  # 0: no limit
    panel.range_spin.setValue(1)
    panel.propagate()
    reached = [z for z in range(12) if (np.asarray(target.data[z]) == 1).any()]
    assert reached == [5, 6, 7]


def test_the_chosen_axis_of_a_time_lapse_stays_chosen(viewer_widget, builtin):
    """A TZYX image offers Z (first) and T; choosing T must survive the refresh that
    Propagate does before it starts."""
    stack, _ = _ellipsoids(shape=(4, 48, 48))
    viewer, widget, image = viewer_widget(np.stack([stack, stack, stack]), session=builtin)
    image.axis_labels = ("t", "z", "y", "x")
    panel = widget.volume
    panel.box.setChecked(True)
    assert [panel.axis_combo.itemText(i) for i in range(2)] == ["z", "t"]
    panel.axis_combo.setCurrentIndex(1)
    panel._fill_axes()
    assert panel.axis_combo.currentData() == 0 and panel.axis_combo.currentText() == "t"


def test_propagate_without_objects_or_planes_says_what_to_do(viewer_widget, builtin, notes):
    stack, _ = _ellipsoids(shape=(4, 48, 48))
    viewer, widget, image = viewer_widget(stack, session=builtin)
    target = widget.target_labels(image)
    widget.volume.propagate()
    assert "No objects on this plane" in notes.text() and not target.data.any()
    viewer.layers.clear()
    _, widget, _ = viewer_widget(stack[0], session=builtin)
    widget.volume.propagate()
    assert "single plane" in notes.text()


def test_napari_stays_responsive_and_cancel_writes_nothing(
    threaded_viewer, builtin, qtbot, monkeypatch
):
    from qtpy.QtCore import QTimer

    from napari_segany.volume_api import Volume

    walked = []
    original = Volume._predict

    def slow(self, index, prompt):  # a slow model: time to see the event loop and cancel
        walked.append(index)
        time.sleep(0.05)
        return original(self, index, prompt)

    monkeypatch.setattr(Volume, "_predict", slow)
    viewer, widget = threaded_viewer
    stack, truth = _ellipsoids()
    image = viewer.add_image(stack)
    widget.use_session(builtin)
    qtbot.waitUntil(lambda: widget.segany is not None and widget.idle(), timeout=30_000)
    target = widget.target_labels(image)
    target.data[6][truth[6] == 1] = 1
    before = target.data.copy()
    viewer.dims.set_point(0, 6)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    widget.volume.propagate()
    qtbot.waitUntil(lambda: len(walked) >= 2, timeout=30_000)
    assert len(ticks) >= 3  # the event loop ran while the model worked
    widget.cancel()
    qtbot.waitUntil(widget.idle, timeout=30_000)
    timer.stop()
    np.testing.assert_array_equal(np.asarray(target.data), before)  # nothing half-written
    assert widget.controls.status.text() == "cancelled"
