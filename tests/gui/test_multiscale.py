"""napari multiscale layers: the widget works on their finest level that fits
(``_layers.working_level``), reading large lazy planes by windows only."""

import dask.array as da
import numpy as np
import pytest

from napari_segany import _layers, _levels
from napari_segany._qt.widget import LABELS, PREVIEW, PROMPTS
from napari_segany.core.synthetic import generate_scene, interior_point_yx

pytestmark = pytest.mark.gui


def _scene_levels(side: int = 1100):
    """A nuclei scene as a two-level pyramid of dask arrays (level 1: 2 x 2 means)."""
    scene = generate_scene(np.random.default_rng(7), (side, side), "nuclei", radius=12.0)
    fine = scene.image.astype(np.float32)
    coarse = fine.reshape(side // 2, 2, side // 2, 2).mean(axis=(1, 3))
    levels = [da.from_array(fine, chunks=256), da.from_array(coarse, chunks=256)]
    return scene, levels


def _biggest(labels: np.ndarray) -> np.ndarray:
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    return labels == ids[np.argmax(areas)]


def test_a_large_lazy_level_is_handed_on_unread_and_the_click_lands_on_it(
    viewer_widget, monkeypatch
):
    from napari_segany import SegAny

    monkeypatch.setattr(_levels, "LAZY_PLANE_PIXELS", 1000 * 1000)
    scene, levels = _scene_levels()
    given = []
    session = SegAny("builtin", device="cpu", precision="fp32", tiling=(384, 64))
    original = session.prepare
    monkeypatch.setattr(
        session, "prepare", lambda plane, *a, **k: given.append(plane) or original(plane, *a, **k)
    )
    viewer, widget, image = viewer_widget(levels, session=session, multiscale=True)
    assert _layers.working_level(image) == (image.data[0], (1.0, 1.0))
    nucleus = _biggest(scene.labels)
    y, x = interior_point_yx(nucleus, edge_is_background=False)
    viewer.layers[PROMPTS].add([y, x])
    widget.prompts.timer.stop()
    widget.prompts.refresh()
    assert given and all(isinstance(plane, da.Array) for plane in given)  # never read whole
    shown = viewer.layers[PREVIEW].data > 0
    assert shown.shape == scene.labels.shape and shown[y, x]
    iou = (shown & nucleus).sum() / (shown | nucleus).sum()
    assert iou > 0.6
    widget.commit()
    assert viewer.layers[LABELS].data.shape == scene.labels.shape
    assert viewer.layers[LABELS].data[y, x] == 1


def test_levels_too_large_are_skipped_for_the_finest_that_fits(viewer_widget, monkeypatch):
    from napari_segany import SegAny

    monkeypatch.setattr(_levels, "MAX_LEVEL_PIXELS", 600 * 600)
    scene, levels = _scene_levels()
    session = SegAny("builtin", device="cpu", precision="fp32")
    viewer, widget, image = viewer_widget(
        levels, session=session, multiscale=True, scale=(0.5, 0.5)
    )
    level, factor = _layers.working_level(image)
    assert level is image.data[1] and factor == (2.0, 2.0)
    nucleus = _biggest(scene.labels)
    y, x = interior_point_yx(nucleus, edge_is_background=False)
    viewer.layers[PROMPTS].add([y, x])  # the prompt layer is in level 0's pixels
    widget.prompts.timer.stop()
    widget.prompts.refresh()
    preview = viewer.layers[PREVIEW]
    assert preview.data.shape == (550, 550)
    np.testing.assert_allclose(preview.scale, (1.0, 1.0))  # 0.5 x the level's factor 2
    assert preview.data[y // 2, x // 2] > 0
    widget.commit()
    labels = viewer.layers[LABELS]
    assert labels.data.shape == (550, 550) and labels.data[y // 2, x // 2] == 1
    # in world coordinates the committed object lies where the nucleus is
    world = np.array(np.nonzero(labels.data == 1)).mean(axis=1) * labels.scale
    truth = np.array(np.nonzero(nucleus)).mean(axis=1) * image.scale
    assert np.abs(world - truth).max() < 3.0
