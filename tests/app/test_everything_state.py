"""The Qt-free everything-mode state: runs, re-selection, targets (no Qt)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_segany.app import everything as app
from napari_segany.app.sessions import EverythingSession
from napari_segany.core.errors import CancelledError, LabelsDtypeError
from napari_segany.core.progress import drain
from tests.gui.everything_fakes import BlobSession, blob_plane


@pytest.fixture
def viewer():
    return ViewerModel()


def _run(session, image, indices, stack, iou=0.4, link=True, event=None):
    filters = app.filters_for(session, {"pred_iou_thresh": iou})
    steps = app.decode_run(
        session,
        image,
        indices,
        None,
        "grid",
        {"points_per_side": 4},
        filters,
        link,
        event or threading.Event(),
    )
    selection = drain(steps)
    return app.Run(image, list(indices), selection.candidates, stack), selection


def test_the_fake_implements_the_protocol():
    session = BlobSession()
    assert isinstance(session, EverythingSession)
    assert session.everything.parameters("grid") == {"points_per_side"}


def test_a_run_keeps_candidates_and_reselects_without_the_model(viewer):
    session = BlobSession()
    image = viewer.add_image(blob_plane())
    run, selection = _run(session, image, [()], stack=False, iou=0.9)
    assert selection.n_objects == 1 and len(session.decode_calls) == 1
    again = app.reselect(run, app.filters_for(session, {"pred_iou_thresh": 0.4}), link=True)
    assert again.n_objects == 2 and len(session.decode_calls) == 1


def test_stack_ids_are_linked_and_unlinked_on_reselection(viewer):
    session = BlobSession()
    image = viewer.add_image(np.stack([blob_plane()] * 3))
    indices = app.run_indices(image, (0,), stack=True)
    assert indices == [(0,), (1,), (2,)]
    run, selection = _run(session, image, indices, stack=True)
    assert selection.n_objects == 2
    unlinked = app.reselect(run, app.filters_for(session, {"pred_iou_thresh": 0.4}), link=False)
    assert unlinked.n_objects == 6


def test_cancel_stops_the_run(viewer):
    image = viewer.add_image(np.stack([blob_plane()] * 3))
    event = threading.Event()
    event.set()
    with pytest.raises(CancelledError):
        _run(BlobSession(), image, [(0,), (1,), (2,)], stack=True, event=event)


def test_user_labels_are_kept_and_edits_stop_rewrites(viewer):
    session = BlobSession()
    image = viewer.add_image(blob_plane())
    mine = viewer.add_labels(np.zeros((48, 64), np.int32), name="mine")
    mine.data[10:15, 10:30] = 7
    targets = app.Targets(viewer)
    target, own = targets.choose(image, "mine")
    assert target is mine and not own
    run, selection = _run(session, image, [()], stack=False)
    run.aim(target, own, overwrite=False)
    assert "2 objects on the image in 'mine'" in app.write(run, selection)
    assert (mine.data[10:15, 10:30] == 7).all() and mine.data[32, 44] > 7
    assert app.edited_planes(run) == []
    mine.data[0, 0] = 3
    assert app.edited_planes(run) == [()]
    assert "was edited" in app.edited_message(run, [()])


def test_a_run_into_a_0_255_mask_widens_only_with_consent(viewer):
    session = BlobSession()
    image = viewer.add_image(blob_plane())
    mask = viewer.add_labels(np.zeros((48, 64), np.uint8), name="mask")
    mask.data[40:, :10] = 255
    run, selection = _run(session, image, [()], stack=False)
    run.aim(mask, own=False, overwrite=False)
    asked = []
    with pytest.raises(LabelsDtypeError, match="'mask' stores uint8"):
        app.write(run, selection, consent=lambda error: asked.append(error.wider) or False)
    assert asked == [np.uint16] and mask.data.dtype == np.uint8
    assert np.unique(mask.data).tolist() == [0, 255] and run.written == {}
    assert "2 objects" in app.write(run, selection, consent=lambda error: True)
    assert mask.data.dtype == np.uint16
    assert sorted(np.unique(mask.data).tolist()) == [0, 255, 256, 257]
    assert (mask.data[40:, :10] == 255).all()
    mask.undo()  # the run's write is one step; the mask stays as it was
    assert np.unique(mask.data).tolist() == [0, 255]


def test_status_names_the_plane_of_a_stack_run(viewer):
    image = viewer.add_image(np.stack([blob_plane()] * 3), axis_labels=("z", "y", "x"))
    assert app.run_words(image, [(2,)], stack=False) == "plane z=2"
    assert app.run_words(image, [(0,), (1,), (2,)], stack=True) == "3 planes"


def test_own_layer_is_made_once_per_image(viewer):
    image = viewer.add_image(blob_plane())
    targets = app.Targets(viewer)
    layer, own = targets.choose(image, None)
    assert own and layer.name == app.EVERYTHING
    assert targets.choose(image, None) == (layer, True)
    assert [la.name for la in viewer.layers].count(app.EVERYTHING) == 1


def test_defaults_and_modes_without_a_session():
    assert app.mode_choices(None) == {"grid": "SAM's grid of point prompts"}
    values = app.default_values(None)
    assert values["points_per_side"] == 32 and values["pred_iou_thresh"] == 0.88
