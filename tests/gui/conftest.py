"""Shared fixtures of the GUI tests: a viewer with the widget on a fake session."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import notification_manager
from tests.fakes import DiscSession

from napari_segany._qt.widget import SegAnyWidget


@pytest.fixture
def notes():
    """Messages of the napari notifications shown during the test."""
    start = len(notification_manager.records)
    shown: list[str] = []

    class View(list):
        def __iter__(self):
            return iter(n.message for n in notification_manager.records[start:])

        def text(self) -> str:
            return "\n".join(self)

    yield View(shown)


@pytest.fixture
def viewer_widget(make_napari_viewer, monkeypatch):
    """``make(data, session=None, **image_kwargs) -> (viewer, widget, image)``, inline work."""
    monkeypatch.setenv("SEGANY_NOTHREADS", "1")
    viewer = make_napari_viewer()

    def make(data, session=None, **kwargs):
        layer = viewer.add_image(data, **kwargs)
        widget = SegAnyWidget(viewer)
        viewer.window.add_dock_widget(widget)
        widget.use_session(session or DiscSession())
        return viewer, widget, layer

    return make


def centre(mask: np.ndarray) -> tuple[int, int]:
    """(row, col) centre of the True pixels of a 2D mask."""
    ys, xs = np.nonzero(mask)
    return round(ys.mean()), round(xs.mean())


@pytest.fixture
def threaded_viewer(make_napari_viewer, qtbot, monkeypatch):
    """A viewer whose widget works in real threads; waits for its jobs at the end."""
    monkeypatch.delenv("SEGANY_NOTHREADS", raising=False)
    viewer = make_napari_viewer()
    widget = SegAnyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    yield viewer, widget
    qtbot.waitUntil(lambda: widget.idle() and not widget.prompts.busy(), timeout=60_000)
