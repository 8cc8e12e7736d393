"""Stacks with real threads, and errors that become notifications (fake session)."""

import numpy as np
import pytest
from tests.fakes import DiscSession
from tests.gui.conftest import centre

from napari_segany._qt._workers import eta_text
from napari_segany._qt.widget import LABELS, PROMPTS, SegAnyWidget
from napari_segany.core.progress import Progress

pytestmark = pytest.mark.gui


@pytest.fixture
def threaded(make_napari_viewer, qtbot, monkeypatch):
    """``make(session) -> (viewer, widget, image, data)``: a 5-plane stack, real threads."""
    monkeypatch.delenv("SEGANY_NOTHREADS", raising=False)
    viewer = make_napari_viewer()
    data = np.stack([np.full((40, 40), z + 1, np.uint16) for z in range(5)])
    image = viewer.add_image(data, scale=(2.0, 1.0, 1.0))
    widgets = []

    def make(session):
        widget = SegAnyWidget(viewer)
        widget.use_session(session)
        qtbot.waitUntil(lambda: widget.segany is session, timeout=10_000)
        widgets.append(widget)
        return viewer, widget, image, data

    yield make
    for widget in widgets:  # let running workers end before the viewer closes
        qtbot.waitUntil(
            lambda w=widget: w.idle() and w.prompts._job is None or w.prompts._job.finished,
            timeout=10_000,
        )


def test_moving_on_during_embedding_commits_on_the_clicked_plane(threaded, qtbot):
    viewer, widget, _, data = threaded(DiscSession(embed_seconds=0.4))
    viewer.dims.set_point(0, 2.0 * 3)  # plane 3 (scale 2)
    viewer.layers[PROMPTS].add([3, 20, 25])
    widget.commit()  # plane 3 is not embedded yet: the commit waits for it
    assert widget.prompts.commit_pending
    viewer.dims.set_point(0, 2.0 * 1)  # the user moves on at once
    qtbot.waitUntil(
        lambda: LABELS in viewer.layers and viewer.layers[LABELS].data.max() > 0, timeout=10_000
    )
    labels = viewer.layers[LABELS].data
    assert centre(labels[3] > 0) == (20, 25)
    assert labels[[0, 1, 2, 4]].max() == 0
    assert widget.segany.segment_calls[-1]["plane_sum"] == data[3].sum()
    assert len(viewer.layers[PROMPTS].data) == 0


def test_visited_planes_are_embedded_once(threaded, qtbot):
    viewer, widget, _, _ = threaded(DiscSession(embed_seconds=0.05))
    session = widget.segany
    for z in (1, 2, 1, 2):
        viewer.dims.set_point(0, 2.0 * z)
        widget.prompts.refresh()
        qtbot.waitUntil(lambda: widget.prompts._job is None or widget.prompts._job.finished)
    # napari opens the stack on its middle plane (2, value 3); then plane 1 (value 2) once
    assert [plane[0, 0] for plane in session.planes] == [3, 2]


def test_deleting_the_image_during_embedding_notifies(threaded, qtbot, notes):
    viewer, widget, image, _ = threaded(DiscSession(embed_seconds=0.4))
    viewer.dims.set_point(0, 2.0 * 4)
    viewer.layers[PROMPTS].add([4, 10, 10])
    widget.prompts.refresh()
    viewer.layers.remove(image)
    qtbot.waitUntil(lambda: "was deleted" in notes.text(), timeout=10_000)
    assert LABELS not in viewer.layers


def test_compute_all_slices_reports_progress_and_can_be_cancelled(threaded, qtbot):
    viewer, widget, _, _ = threaded(DiscSession(embed_seconds=0.05))
    values = []
    widget.controls.progress.valueChanged.connect(values.append)
    widget.compute_all_slices()
    qtbot.waitUntil(widget.idle, timeout=10_000)
    assert len(widget.segany.cache) == 5 and "5 planes prepared" in widget.controls.status.text()
    assert 40 in values and values[-1] == 100
    slow = DiscSession(embed_seconds=0.3)
    widget.segany = slow
    widget.compute_all_slices()
    qtbot.waitUntil(lambda: len(slow.cache) >= 1, timeout=10_000)
    widget.cancel()
    qtbot.waitUntil(lambda: widget._job.finished, timeout=10_000)  # stopped at a plane
    assert len(slow.cache) < 5 and widget.controls.status.text() == "cancelled"


def test_eta_is_extrapolated_from_the_planes_done():
    assert eta_text(Progress(2, 10), started=0.0, now=4.0) == "2/10, about 16 s left"
    assert eta_text(Progress(1, 100), started=0.0, now=2.0) == "1/100, about 3 min left"
    assert eta_text(Progress(0, 10), started=0.0, now=4.0) == "0/10"


def test_gpu_out_of_memory_is_a_notification_with_a_next_step(viewer_widget, notes):
    import torch

    viewer, widget, _ = viewer_widget(np.zeros((4, 30, 30), np.uint8))
    labels = viewer.add_labels(np.ones((4, 30, 30), np.int32), name="mine")
    failing = DiscSession(fail_with=torch.cuda.OutOfMemoryError("CUDA out of memory."))
    widget.segany = failing
    viewer.dims.set_point(0, 2)
    viewer.layers[PROMPTS].add([2, 10, 10])
    widget.commit()
    assert "GPU ran out of memory" in notes.text() and "device 'cpu'" in notes.text()
    assert (labels.data == 1).all()


def test_missing_checkpoint_and_offline_download_are_notifications(
    viewer_widget, notes, tmp_path, monkeypatch
):
    import pooch
    import requests

    monkeypatch.setenv("SEGANY_CACHE_DIR", str(tmp_path))
    _, widget, _ = viewer_widget(np.zeros((30, 30), np.uint8))
    widget.controls.checkpoint_edit.setText(str(tmp_path / "missing.pth"))
    widget.load_model()
    assert "missing.pth does not exist" in notes.text()

    def offline(*_, **__):
        raise requests.exceptions.ConnectionError("no network")

    monkeypatch.setattr(pooch, "retrieve", offline)
    widget.controls.checkpoint_edit.setText("")
    widget.controls.model_combo.setCurrentText("vit_t")
    widget.load_model()
    assert "Could not download" in notes.text() and widget.controls.load_button.isEnabled()


def test_an_embeddings_folder_keeps_the_planes_and_a_foreign_one_is_refused(
    viewer_widget, notes, tmp_path
):
    from napari_segany.core.store import EmbeddingStore

    plane = np.random.default_rng(0).integers(0, 255, (96, 128)).astype(np.uint8)
    _, widget, _ = viewer_widget(plane)
    widget.controls.model_combo.setCurrentText("builtin")
    widget.controls.device_combo.setCurrentText("cpu")
    widget.controls.store_edit.setText(str(tmp_path / "embeddings"))
    widget.load_model()
    store = widget.segany.embedding_store
    assert isinstance(store, EmbeddingStore) and len(store) == 1  # the shown plane, on disk
    first = widget.segany
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not embeddings")
    widget.controls.store_edit.setText(str(tmp_path / "mine"))
    widget.load_model()
    assert "not a napari-segany embedding store" in notes.text()
    assert widget.segany is first  # the loaded session stays
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
