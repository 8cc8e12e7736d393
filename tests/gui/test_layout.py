"""The widget as a person sees it (Xvfb screen 1600 x 1000): size, rows, status, undo."""

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDoubleSpinBox, QScrollArea, QSpinBox
from tests.gui.everything_fakes import BlobProposer, BlobSession, blob_plane

from napari_segany._qt import _dialogs
from napari_segany._qt._prompting import point_size
from napari_segany._qt.widget import EVERYTHING, LABELS, PROMPTS, SegAnyWidget
from napari_segany.core.everything import EverythingModes

pytestmark = pytest.mark.gui


@pytest.fixture
def shown_viewer(make_napari_viewer, monkeypatch, qtbot):
    """``make(data, session) -> (viewer, widget, dock)`` in a window on the screen."""
    monkeypatch.setenv("SEGANY_NOTHREADS", "1")
    viewer = make_napari_viewer(show=True)

    def make(data, session):
        viewer.add_image(data, name="nuclei")
        widget = SegAnyWidget(viewer)
        dock = viewer.window.add_dock_widget(widget, name="Segment Anything", area="right")
        widget.use_session(session)
        qtbot.waitUntil(lambda: widget.isVisible() and widget.segany is session)
        return viewer, widget, dock

    return make


def test_opening_everything_mode_scrolls_instead_of_growing_past_the_screen(shown_viewer, qtbot):
    from napari_segany._sample_data import nuclei_scene_2d

    viewer, widget, dock = shown_viewer(nuclei_scene_2d().image, BlobSession())
    window = viewer.window._qt_window
    screen = window.screen().availableGeometry()
    assert (screen.width(), screen.height()) == (1600, 1000), (
        "the layout is checked on a 1600 x 1000 screen: run the GUI tests with "
        "scripts/test.sh (xvfb-run -s '-screen 0 1600x1000x24')"
    )
    canvas = viewer.window._qt_viewer.canvas.native
    scroll = widget.findChild(QScrollArea)
    narrowest = lambda: max(scroll.minimumSizeHint().width(), dock.minimumWidth())  # noqa: E731
    qtbot.waitUntil(lambda: dock.width() == narrowest())  # laid out (napari's title bar
    # sets the dock's own minimum width)
    width_before = canvas.width()
    widget.everything.box.setChecked(True)
    assert scroll is not None and scroll.isAncestorOf(widget.everything.box)
    qtbot.waitUntil(lambda: scroll.verticalScrollBar().maximum() > 0)  # it scrolls
    assert window.frameGeometry().height() <= screen.height()
    assert dock.frameGeometry().bottom() <= screen.height()
    inner = scroll.widget()  # nothing cut on the right (no horizontal scrolling)
    qtbot.waitUntil(lambda: scroll.viewport().width() >= inner.minimumSizeHint().width())
    assert canvas.width() == width_before  # opening the group does not squeeze the canvas


def test_the_image_fits_the_canvas_after_the_dock_narrowed_it(shown_viewer, qtbot):
    viewer, widget, _ = shown_viewer(np.zeros((256, 256), np.uint8), BlobSession())
    canvas = viewer.window._qt_viewer.canvas.native
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari 0.9

    def image_fits() -> bool:
        shown_px = 256 * camera.zoom
        return shown_px <= canvas.width() + 1 and shown_px <= canvas.height() + 1

    qtbot.waitUntil(image_fits)
    assert camera.zoom * 256 >= 0.9 * min(canvas.width(), canvas.height())  # not tiny


def test_the_model_description_is_readable_in_full(shown_viewer, qtbot):
    from napari_segany.core.registry import REGISTRY

    _, widget, _ = shown_viewer(np.zeros((64, 64), np.uint8), BlobSession())
    widget.everything.box.setChecked(True)  # the tall state that squeezed it before
    note = widget.controls.model_note
    description = REGISTRY[widget.controls.model_combo.currentText()].description
    assert description and note.wordWrap() and note.toolTip() == description
    # once laid out, every wrapped line shows (the label is as tall as its text needs)
    qtbot.waitUntil(lambda: note.height() >= note.heightForWidth(note.width()) > 0)
    assert note.heightForWidth(note.width()) > note.fontMetrics().height()  # it wraps


@dataclass(frozen=True)
class ZoomParams:
    head_zoom: int = 0


class ZoomProposer:
    """A second fake mode: a zoom of its own, and only the area rule among the thresholds."""

    name = "zoomed"
    description = "fake: zoomed blobs"
    params_type = ZoomParams
    filters = MappingProxyType({"min_mask_region_area": "min region area"})


def _shown_rows(panel) -> dict[str, str]:
    return {name: label.text() for name, (label, item) in panel.rows.items() if item.isVisible()}


def test_each_mode_shows_exactly_its_own_parameters(shown_viewer):
    session = BlobSession()
    session.everything = EverythingModes((BlobProposer(), ZoomProposer()), "zoomed")
    _, widget, _ = shown_viewer(blob_plane(), session)
    panel = widget.everything
    panel.box.setChecked(True)
    assert panel.mode == "zoomed"  # the session's default first
    assert _shown_rows(panel) == {"head_zoom": "zoom", "min_mask_region_area": "min region area"}
    assert panel.grid_params() == {"head_zoom": 0}
    assert panel.filter_params() == {"min_mask_region_area": 0}
    panel.proposals_combo.setCurrentIndex(panel.proposals_combo.findData("grid"))
    assert _shown_rows(panel) == {
        "points_per_side": "points per side",
        "pred_iou_thresh": "min brightness",
    }
    assert panel.grid_params() == {"points_per_side": 32}
    assert list(panel.filter_params()) == ["pred_iou_thresh"]
    panel.iou_spin.setValue(0)
    for _, item in panel.rows.values():  # a rule at 0 says "off", never "0.00"
        if item.isVisible() and isinstance(item, QDoubleSpinBox | QSpinBox):
            assert item.text() != "0.00"
    assert panel.iou_spin.text() == "off"


def test_without_a_model_mode_the_panel_shows_sams_grid(shown_viewer):
    from tests.fakes import DiscSession

    _, widget, _ = shown_viewer(np.zeros((32, 32), np.uint8), DiscSession())
    panel = widget.everything
    panel.box.setChecked(True)
    assert set(_shown_rows(panel)) == {
        "points_per_side",
        "use_m2m",
        "pred_iou_thresh",
        "stability_score_thresh",
        "box_nms_thresh",
        "min_mask_region_area",
    }


def test_status_names_no_plane_for_a_2d_image_and_the_axis_for_a_stack(viewer_widget):
    viewer, widget, _ = viewer_widget(blob_plane(), session=BlobSession())
    viewer.layers[PROMPTS].add([12, 14])
    widget.commit()
    status = widget.controls.status.text()
    assert status.startswith("committed object 1 into 'SegAny labels'")
    assert "plane" not in status
    widget.segment_everything()
    assert "objects on the image in 'SegAny everything'" in widget.controls.status.text()


def test_status_of_a_stack_commit_names_the_plane_by_its_axis(viewer_widget):
    viewer, widget, _ = viewer_widget(
        np.stack([blob_plane()] * 4), session=BlobSession(), axis_labels=("z", "y", "x")
    )
    viewer.dims.set_point(0, 3)
    viewer.layers[PROMPTS].add([3, 12, 14])
    widget.commit()
    assert "into 'SegAny labels' on plane z=3" in widget.controls.status.text()


def test_the_widget_says_how_the_model_reads_the_images_channels(viewer_widget):
    red_only = np.zeros((64, 64, 3), np.uint8)
    red_only[20:40, 20:40, 0] = 200  # nuclei in the red channel of an RGB file
    viewer, widget, _ = viewer_widget(red_only, rgb=True, name="red")
    note = widget.controls.channels_note
    assert "channel 0 as grey" in note.text() and "unused: channel 1, 2" in note.text()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="grey")
    widget.controls.image_combo.setCurrentText("grey")
    assert note.text() == "<small>model sees: grey</small>"


def test_prompt_markers_are_small_hollow_rings(viewer_widget):
    viewer, _, _ = viewer_widget(np.zeros((256, 256), np.uint8))
    prompts = viewer.layers[PROMPTS]
    prompts.add([100, 100])
    assert prompts.size[0] == point_size((256, 256)) < 5  # was 10: covered small nuclei
    assert prompts.face_color[0][3] == 0  # transparent: the mask under it shows
    assert prompts.border_width[0] == pytest.approx(0.25) and prompts.border_width_is_relative
    assert point_size((4096, 4096)) == 12 and point_size((40, 40)) == 3


def _mask_layer(viewer, shape=(48, 64)):
    data = np.zeros(shape, np.uint8)
    data[40:, :10] = 255  # a thresholded 0/255 mask opened as labels
    return viewer.add_labels(data, name="mask")


def test_commit_into_a_0_255_mask_widens_only_after_asking(viewer_widget, monkeypatch, notes):
    viewer, widget, _ = viewer_widget(blob_plane(), session=BlobSession())
    mask = _mask_layer(viewer)
    widget.controls.target_combo.setCurrentText("mask")
    answers, asked = [False, True], []

    def answer(parent, error):
        asked.append((parent, error.wider))
        return answers.pop(0)

    monkeypatch.setattr(_dialogs, "ask_to_widen", answer)
    viewer.layers[PROMPTS].add([12, 14])
    widget.commit()  # the user answers No
    assert asked == [(widget, np.uint16)] and mask.data.dtype == np.uint8
    assert np.unique(mask.data).tolist() == [0, 255]
    assert "Nothing committed" in notes.text() and "stores uint8 ids up to 255" in notes.text()
    assert widget.prompts.preview is not None  # the prompts stay for another try
    widget.commit()  # Yes
    assert mask.data.dtype == np.uint16 and mask.data[12, 14] == 256
    assert (mask.data[40:, :10] == 255).all()
    widget.undo_commit()
    assert mask.data[12, 14] == 0 and (mask.data[40:, :10] == 255).all()


def test_everything_mode_into_a_0_255_mask_asks_too(viewer_widget, monkeypatch, notes):
    viewer, widget, _ = viewer_widget(blob_plane(), session=BlobSession())
    mask = _mask_layer(viewer)
    widget.everything.target_combo.setCurrentText("mask")
    widget.everything.iou_spin.setValue(0.4)  # both blobs
    monkeypatch.setattr(_dialogs, "ask_to_widen", lambda parent, error: False)
    widget.segment_everything()
    assert mask.data.dtype == np.uint8 and np.unique(mask.data).tolist() == [0, 255]
    assert "Everything mode wrote nothing" in notes.text()
    monkeypatch.setattr(_dialogs, "ask_to_widen", lambda parent, error: True)
    widget.segment_everything()
    assert mask.data.dtype == np.uint16
    assert sorted(np.unique(mask.data).tolist()) == [0, 255, 256, 257]
    assert EVERYTHING not in viewer.layers
    ops = [step["op"] for step in widget.curations.get(mask).steps]
    assert ops[-2:] == ["dtype", "pixels"]  # the widening and the write, both recorded
    widget.undo()  # the write taken back on the widened array; the wider type stays
    assert mask.data.dtype == np.uint16 and np.unique(mask.data).tolist() == [0, 255]


def test_ctrl_z_with_the_points_layer_selected_undoes_the_last_commit(viewer_widget, qtbot):
    viewer, widget, _ = viewer_widget(blob_plane(), session=BlobSession())
    prompts = viewer.layers[PROMPTS]
    prompts.add([12, 14])
    widget.commit()
    prompts.add([32, 44])
    widget.commit()
    labels = viewer.layers[LABELS]
    assert labels.data[12, 14] == 1 and labels.data[32, 44] == 2
    viewer.layers.selection.active = prompts
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, Qt.Key_Z, Qt.ControlModifier)
    assert labels.data[32, 44] == 0 and labels.data[12, 14] == 1
    assert widget.controls.status.text().startswith("undid add [2]")
    assert widget.controls.status.text().endswith("in 'SegAny labels'")
    viewer.layers.selection.active = viewer.layers["SegAny boxes"]
    qtbot.keyClick(canvas, Qt.Key_Z, Qt.ControlModifier)
    assert labels.data.max() == 0


def test_undo_and_redo_step_through_commits_and_the_users_strokes_alike(viewer_widget):
    viewer, widget, _ = viewer_widget(blob_plane(), session=BlobSession())
    viewer.layers[PROMPTS].add([12, 14])
    widget.commit()
    labels = viewer.layers[LABELS]
    committed = labels.data.copy()
    labels.paint((30, 30), 5)  # the user paints after the commit: a step of its own
    painted = labels.data.copy()
    widget.controls.undo_button.click()
    np.testing.assert_array_equal(labels.data, committed)
    assert widget.controls.status.text().startswith("undid paint")
    widget.controls.undo_button.click()
    assert labels.data.max() == 0
    widget.controls.redo_button.click()
    widget.controls.redo_button.click()
    np.testing.assert_array_equal(labels.data, painted)
    assert widget.controls.status.text().startswith("redid paint")
    labels.data = labels.data.astype(np.int64)  # the layer's array replaced, same shape
    widget.controls.undo_button.click()
    np.testing.assert_array_equal(labels.data, committed)
