"""Prompts, live preview, candidates and commit in a real viewer (fake session)."""

import numpy as np
import pytest
from tests.gui.conftest import centre

from napari_segany._qt import _keys
from napari_segany._qt.widget import BOXES, LABELS, PREVIEW, PROMPTS

pytestmark = pytest.mark.gui


def _preview_now(widget):
    widget.prompts.timer.stop()
    widget.prompts.refresh()
    return widget.viewer.layers[PREVIEW].data


def test_prompt_layers_share_the_image_transform(viewer_widget):
    viewer, _, image = viewer_widget(
        np.zeros((3, 20, 30), np.uint16), scale=(2.0, 0.5, 0.25), translate=(5.0, 1.0, 2.0)
    )
    for name in (PROMPTS, BOXES):
        layer = viewer.layers[name]
        assert layer.ndim == 3
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, image.translate)
    assert viewer.layers.selection.active is viewer.layers[PROMPTS]


def test_polarity_is_a_feature_shown_by_the_ring_colour(viewer_widget):
    viewer, widget, _ = viewer_widget(np.zeros((40, 40), np.uint8))
    prompts = viewer.layers[PROMPTS]
    prompts.add([10, 10])
    widget.toggle_polarity()  # Shift-N
    prompts.add([30, 30])
    assert prompts.features["positive"].tolist() == [True, False]
    np.testing.assert_allclose(prompts.border_color[0], [0, 1, 0, 1])  # lime
    np.testing.assert_allclose(prompts.border_color[1], [1, 0, 1, 1])  # magenta
    preview = _preview_now(widget)
    assert centre(preview > 0) == (10, 10)  # the disc follows the positive point only
    assert widget.segany.segment_calls[-1]["points_yx"].tolist() == [[10, 10], [30, 30]]


def test_shift_click_adds_a_negative_point():
    from types import SimpleNamespace

    from napari.layers import Points

    from napari_segany._qt._prompting import PromptController

    layer = Points(np.empty((0, 2)), features={"positive": np.empty(0, bool)})
    controller = SimpleNamespace(negative=False)
    PromptController._polarity_from_click(controller, layer, SimpleNamespace(modifiers=["Shift"]))
    layer.add([1, 1])
    PromptController._polarity_from_click(controller, layer, SimpleNamespace(modifiers=[]))
    layer.add([2, 2])
    assert layer.features["positive"].tolist() == [False, True]


def test_preview_follows_prompts_and_candidates_cycle(viewer_widget):
    viewer, widget, _ = viewer_widget(np.zeros((50, 60), np.uint8))
    viewer.layers[PROMPTS].add([20, 25])
    preview = _preview_now(widget)
    assert (preview > 0).sum() == (np.hypot(*np.mgrid[-5:6, -5:6]) <= 5).sum()  # best: r=5
    assert "candidate 2/3 · score 0.90" in widget.controls.candidate_label.text()
    widget.next_candidate()  # Shift-M
    radius7 = (np.hypot(*np.mgrid[-7:8, -7:8]) <= 7).sum()
    assert (viewer.layers[PREVIEW].data > 0).sum() == radius7
    assert "candidate 3/3 · score 0.70" in widget.controls.candidate_label.text()
    widget.commit()
    assert (viewer.layers[LABELS].data == 1).sum() == radius7  # the candidate shown
    assert viewer.layers[PREVIEW].data.max() == 0 and len(viewer.layers[PROMPTS].data) == 0


def test_next_candidate_skips_empty_candidates(viewer_widget):
    viewer, widget, _ = viewer_widget(np.zeros((50, 60), np.uint8))
    widget.segany.radii = (3, 5, -1)  # the third candidate has no pixel
    viewer.layers[PROMPTS].add([20, 25])
    _preview_now(widget)
    assert "candidate 2/3 · score 0.90" in widget.controls.candidate_label.text()
    widget.next_candidate()
    assert "candidate 1/3 · score 0.50" in widget.controls.candidate_label.text()
    radius3 = (np.hypot(*np.mgrid[-3:4, -3:4]) <= 3).sum()
    assert (viewer.layers[PREVIEW].data > 0).sum() == radius3
    widget.next_candidate()
    assert "candidate 2/3 · score 0.90" in widget.controls.candidate_label.text()


def test_several_boxes_are_several_objects_in_one_call(viewer_widget):
    viewer, widget, _ = viewer_widget(np.zeros((60, 60), np.uint8))
    boxes = viewer.layers[BOXES]
    boxes.add_rectangles([np.array([[5, 5], [15, 20]]), np.array([[30, 30], [50, 40]])])
    widget.commit()
    labels = viewer.layers[LABELS].data
    assert len(widget.segany.segment_calls) == 1
    assert widget.segany.segment_calls[0]["box_yxyx"].shape == (2, 4)
    assert labels[10, 10] == 1 and labels[40, 35] == 2 and labels[25, 25] == 0
    assert len(boxes.data) == 0  # prompts cleared after commit


def test_commit_never_overwrites_unless_asked_and_undo_restores(viewer_widget):
    viewer, widget, image = viewer_widget(np.zeros((30, 30), np.uint8))
    existing = viewer.add_labels(np.zeros((30, 30), np.int32), name="mine")
    existing.data[8:13, 8:13] = 7
    widget.controls.target_combo.setCurrentText("mine")
    widget.controls.route_box.setChecked(False)  # clicks on objects make new ones
    viewer.layers[PROMPTS].add([10, 10])
    widget.commit()
    assert (existing.data[8:13, 8:13] == 7).all()  # the user's object survives
    assert existing.data[10, 15] == 8  # next free id after 7, on background
    viewer.layers[PROMPTS].add([10, 12])
    widget.controls.overwrite_box.setChecked(True)
    widget.commit()
    assert existing.data[10, 10] == 9
    existing.undo()
    assert existing.data[10, 10] == 7 and existing.data[10, 15] == 8
    existing.undo()
    assert existing.data.max() == 7


def test_wrong_shaped_target_gives_a_notification_and_keeps_the_preview(viewer_widget, notes):
    viewer, widget, _ = viewer_widget(np.zeros((30, 30), np.uint8))
    viewer.add_labels(np.zeros((10, 10), np.int32), name="small")
    widget.controls.target_combo.setCurrentText("small")
    viewer.layers[PROMPTS].add([10, 10])
    widget.commit()
    assert "has shape (10, 10)" in notes.text() and "Pick another Labels layer" in notes.text()
    assert viewer.layers["small"].data.max() == 0
    assert widget.prompts.preview is not None and len(viewer.layers[PROMPTS].data) == 1


def test_shortcuts_do_not_clash_with_napari_defaults(viewer_widget):
    from app_model.types import KeyBinding
    from napari.layers import Image, Labels, Points, Shapes
    from napari.utils.shortcuts import default_shortcuts

    taken = {str(kb) for bindings in default_shortcuts.values() for kb in bindings}
    for layer_class in (Image, Labels, Points, Shapes):
        taken.update(str(key) for key in layer_class.class_keymap)
    assert {"Shift+L", "Shift+P", "Shift+A", "Ctrl+Z"} <= taken  # the check sees napari's keys
    ours = {str(KeyBinding.from_str(key)) for key, _, _ in _keys.SHORTCUTS}
    assert len(ours) == len(_keys.SHORTCUTS) and not ours & taken
    viewer, widget, _ = viewer_widget(np.zeros((10, 10), np.uint8))
    for key, _, text in _keys.SHORTCUTS:
        assert key in widget.toolTip() and text in widget.toolTip()
        assert KeyBinding.from_str(key) in viewer.keymap
