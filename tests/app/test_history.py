"""The widget's own undo (app.history): the last write, never the user's painting."""

from __future__ import annotations

import numpy as np
from napari.components import ViewerModel

from napari_segany import _layers
from napari_segany.app.history import WriteHistory


def _square(top: int, left: int, size: int = 4, shape=(20, 20)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + size, left : left + size] = True
    return mask


def _commit(history: WriteHistory, layer, mask: np.ndarray) -> int:
    with history.recording(layer):
        return _layers.commit_mask(layer, (), mask)


def test_undo_takes_back_the_writes_newest_first_across_layers():
    viewer = ViewerModel()
    first = viewer.add_labels(np.zeros((20, 20), np.int32), name="first")
    second = viewer.add_labels(np.zeros((20, 20), np.int32), name="second")
    history = WriteHistory()
    _commit(history, first, _square(0, 0))
    _commit(history, second, _square(5, 5))
    _commit(history, first, _square(10, 10))
    assert len(history) == 3
    assert history.undo(viewer.layers) == "undid the last commit into 'first'"
    assert first.data[10, 10] == 0 and first.data[0, 0] == 1
    assert history.undo(viewer.layers) == "undid the last commit into 'second'"
    assert second.data.max() == 0
    history.undo(viewer.layers)
    assert first.data.max() == 0
    assert history.undo(viewer.layers).startswith("nothing to undo")


def test_a_write_that_changed_nothing_is_not_recorded():
    viewer = ViewerModel()
    layer = viewer.add_labels(np.full((20, 20), 3, np.int32), name="full")
    history = WriteHistory()
    assert _commit(history, layer, _square(0, 0)) == 0  # no background pixel
    assert len(history) == 0


def test_painting_after_a_commit_is_never_undone_by_the_widget():
    viewer = ViewerModel()
    layer = viewer.add_labels(np.zeros((20, 20), np.int32), name="mine")
    history = WriteHistory()
    _commit(history, layer, _square(0, 0))
    layer.paint((15, 15), 9)  # the user paints afterwards (one undo step of the layer)
    painted = layer.data.copy()
    message = history.undo(viewer.layers)
    assert "changed since the last commit" in message
    np.testing.assert_array_equal(layer.data, painted)


def test_a_commit_already_undone_on_the_layer_is_not_undone_again():
    viewer = ViewerModel()
    layer = viewer.add_labels(np.zeros((20, 20), np.int32), name="mine")
    history = WriteHistory()
    layer.paint((15, 15), 9)  # the user's own label, before the commit
    _commit(history, layer, _square(0, 0))
    layer.undo()  # Ctrl-Z on the labels layer took the commit back already
    assert "changed since" in history.undo(viewer.layers)
    assert layer.data[15, 15] == 9  # the user's painting survives


def test_a_write_into_a_deleted_layer_is_dropped():
    viewer = ViewerModel()
    layer = viewer.add_labels(np.zeros((20, 20), np.int32), name="gone")
    history = WriteHistory()
    _commit(history, layer, _square(0, 0))
    viewer.layers.remove(layer)
    assert history.undo(viewer.layers) == "nothing undone: 'gone' was deleted"
    assert len(history) == 0
