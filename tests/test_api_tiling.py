"""Planes larger than the model's frame, window by window (``SegAny(tiling=...)``), with
the built-in model on generated nuclei: clicks on objects crossing tiles come back
whole, everything mode finds what per-part runs find, and a lazy plane is read only
where the work is."""

from __future__ import annotations

import numpy as np
import pytest
from training.evaluate_builtin import best_overlap_iou

from napari_segany.api import SegAny
from napari_segany.core.errors import InputError, PromptError, WindowNotPrepared
from napari_segany.core.synthetic import generate_scene

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session():
    return SegAny("builtin", device="cpu", precision="fp32", tiling=(256, 64))


def _cut_nuclei(scene, session, count: int) -> list[tuple[int, tuple[int, int]]]:
    """Nuclei (id, click (y, x) at its most interior pixel) that the grid window their
    click gets would cut: they cross a window edge inside the plane."""
    from scipy import ndimage

    from napari_segany.core.tiling import prompt_region, window_for

    big = session.tiled
    picked = []
    for index, box in enumerate(ndimage.find_objects(scene.labels), start=1):
        mask = scene.labels[box] == index
        depth = ndimage.distance_transform_edt(mask)
        y, x = np.unravel_index(np.argmax(depth), mask.shape)
        click = (box[0].start + int(y), box[1].start + int(x))
        window = window_for(prompt_region(np.array([click]), None), big.windows, big.hw, big.tiling)
        y0, x0, y1, x1 = window.yxyx
        inside = (
            y0 <= box[0].start and box[0].stop <= y1 and x0 <= box[1].start and box[1].stop <= x1
        )
        if not inside and depth.max() > 6:
            picked.append((index, click))
    return picked[:count]


def test_clicks_on_objects_crossing_tiles_give_whole_objects():
    session = SegAny("builtin", device="cpu", precision="fp32", tiling=(256, 0))  # no halo
    scene = generate_scene(np.random.default_rng(3), (1024, 1024), "nuclei", radius=14.0)
    assert session.set_image(scene.image) is None  # kept, nothing embedded yet
    assert session.tiled is not None and len(session.tiled.windows) == 16
    cut = _cut_nuclei(scene, session, 6)
    assert len(cut) == 6
    ious = []
    for index, click in cut:
        result = session.segment(points_yx=[click], labels=[1])
        assert result.masks.shape == (3, 1024, 1024)
        mask = result.masks[int(np.argmax(result.scores))]
        truth = scene.labels == index
        ious.append((mask & truth).sum() / (mask | truth).sum())
        assert session.tiled.window not in session.tiled.windows  # decoded again, centred
    assert np.mean(ious) > 0.75 and min(ious) > 0.5  # whole objects, not cut halves


def test_prompts_without_embedding_leave_the_windows_to_prepare():
    """Inside ``without_embedding()`` a click on a nucleus cut by its grid window embeds
    nothing: it raises WindowNotPrepared naming the centred window; ``prepare`` of the
    click's region embeds that window too, and the click then gives the answer a
    session embedding on the spot gives."""
    scene = generate_scene(np.random.default_rng(3), (1024, 1024), "nuclei", radius=14.0)
    direct = SegAny("builtin", device="cpu", precision="fp32", tiling=(256, 0))
    deferred = SegAny("builtin", device="cpu", precision="fp32", tiling=(256, 0))
    embedded = []
    embed = deferred.predictor.embed
    deferred.predictor.embed = lambda *a, **k: embedded.append(1) or embed(*a, **k)
    for session in (direct, deferred):
        session.set_image(scene.image)
    (index, click), *_ = _cut_nuclei(scene, deferred, 1)
    region = (click[0], click[1], click[0] + 1, click[1] + 1)
    deferred.prepare(scene.image, region_yxyx=region)  # the click's grid window only
    first = len(embedded)  # (the model's preparation embeds views of the window too)
    assert deferred.prepare(scene.image, region_yxyx=region, run=False) is not None
    with deferred.without_embedding(), pytest.raises(WindowNotPrepared, match="prepare"):
        deferred.segment(points_yx=[click], labels=[1])
    assert len(embedded) == first  # the centred window was noted, not embedded
    assert deferred.prepare(scene.image, region_yxyx=region, run=False) is None
    deferred.prepare(scene.image, region_yxyx=region)
    second = len(embedded)
    assert second > first
    assert deferred.prepare(scene.image, region_yxyx=region, run=False) is not None
    with deferred.without_embedding():
        answer = deferred.segment(points_yx=[click], labels=[1])
    assert len(embedded) == second
    expected = direct.segment(points_yx=[click], labels=[1])
    np.testing.assert_array_equal(answer.masks, expected.masks)
    truth = scene.labels == index
    best = int(np.argmax(answer.scores))
    mask = answer.masks[best]
    assert (mask & truth).sum() / (mask | truth).sum() > 0.5  # the whole nucleus
    with deferred.without_embedding():  # refining it: the logits are the last window's
        again = deferred.segment(
            points_yx=[click], labels=[1], mask_input=answer.logits[best], multimask=False
        )
    assert len(embedded) == second
    assert (again.masks[0] & mask).sum() / (again.masks[0] | mask).sum() > 0.8
    # outside the block (a script, a worker) the session embeds where it needs to
    _, other = _cut_nuclei(scene, deferred, 2)[1]
    deferred.segment(points_yx=[other], labels=[1])
    assert len(embedded) > second


def test_window_notes_are_passed_by_only_by_a_prepare_of_their_region_that_saw_them():
    """A prompt that needs a window not embedded raises until a prepare of its region
    embeds it; only a prepare that knew the note, for the same region, and did not
    embed it (regions that disagree) lets the prompt embed it itself."""
    from napari_segany.core.tiling import Window
    from napari_segany.tiling_api import WindowNotes

    notes, hw, region = WindowNotes(), (1000, 1000), (10, 10, 11, 11)
    window = Window((0, 0, 512, 512), (0, 0, 512, 512))
    held, seen = notes.holding(hw, region)  # a prepare of the region starts first
    assert held == [] and notes.note(hw, window, region)  # then the prompt notes it
    notes.prepared(hw, region, held, seen)  # that prepare never saw the note
    assert notes.note(hw, window, region)  # so the prompt still waits for it
    other = (600, 600, 601, 601)
    notes.prepared(hw, other, *notes.holding(hw, other))  # another region's prepare
    assert notes.note(hw, window, region)
    held, seen = notes.holding(hw, region)
    assert held == [window]
    notes.prepared(hw, region, held, seen)  # embedded: forgotten
    assert notes.holding(hw, region)[0] == []
    apart = Window((400, 400, 912, 912), (400, 400, 912, 912))  # does not hold the region
    assert notes.note(hw, apart, region)
    notes.prepared(hw, region, *notes.holding(hw, region))  # saw it, could not embed it
    assert not notes.note(hw, apart, region)  # the prompt embeds it itself: no loop
    bottom = Window((488, 0, 1000, 512), (488, 0, 1000, 512))
    notes.note(hw, bottom, (999, 5, 1001, 6))  # a click on the last row: clipped
    assert notes.holding(hw, (999, 5, 1001, 6))[0] == [bottom]


def test_tiled_everything_mode_finds_what_each_quarter_finds():
    # "auto"'s tiles for this model (windows of its 512 frame), forced on a 1024 plane
    session = SegAny("builtin", device="cpu", precision="fp32", tiling=(384, 64))
    scene = generate_scene(np.random.default_rng(5), (1024, 1024), "nuclei", radius=9.0)
    session.set_image(scene.image)
    tiled = session.segment_everything()
    ids = np.unique(tiled.labels)
    assert ids[0] == 0 and len(ids) - 1 == len(tiled.objects)  # ids unique, each painted
    found, total = 0, 0
    untiled = SegAny("builtin", device="cpu", precision="fp32", tiling=None)
    for y in (0, 512):
        for x in (0, 512):
            quarter = scene.image[y : y + 512, x : x + 512]
            untiled.set_image(quarter, contrast_limits=session.tiled.reading[0])
            part = untiled.segment_everything().labels
            seen = tiled.labels[y : y + 512, x : x + 512]  # the tiled run, on the quarter
            for object_id in np.unique(part)[1:]:
                total += 1
                found += best_overlap_iou(seen, part == object_id) >= 0.5
    assert total > 100 and found >= 0.9 * total  # the bar (4096^2: 1.000, benchmarks.md)


class _CountingPlane:
    """A (H, W) uint16 plane that counts the pixels read (a stand-in for a lazy array)."""

    def __init__(self, array: np.ndarray) -> None:
        self._array, self.read = array, 0
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, index):
        part = self._array[index]
        self.read += part.size
        return part


def test_a_click_reads_only_its_window_of_a_lazy_plane(session):
    scene = generate_scene(np.random.default_rng(3), (1024, 1024), "nuclei", radius=14.0)
    lazy = _CountingPlane(np.tile(scene.image, (3, 3)))  # 3072 x 3072
    session.set_image(lazy, contrast_limits=(0, 3000))
    assert lazy.read == 0
    session.segment(points_yx=[[1700, 1700]], labels=[1])
    assert 0 < lazy.read <= 2 * 384 * 384  # its window (and perhaps one around the mask)


def test_bad_tiling_and_prompts_outside_are_refused(session):
    with pytest.raises(InputError, match="tiling"):
        SegAny("builtin", device="cpu", tiling=(8, 2))
    session.set_image(np.zeros((1024, 1024), np.uint16))
    with pytest.raises(PromptError, match="outside"):
        session.segment(points_yx=[[1100, 20]], labels=[1])


def test_focus_window_makes_the_window_of_a_region_current(session):
    """The window holding a region becomes the current plane (what a mask prompt is
    framed in); inside ``without_embedding`` a window not embedded is asked for, not
    embedded; a plane seen in one pass has no window."""
    plane = np.random.default_rng(0).integers(0, 255, (900, 900)).astype(np.uint8)
    session.set_image(plane)
    region = (430.5, 440, 470, 480.2)
    with session.without_embedding(), pytest.raises(WindowNotPrepared):
        session.focus_window(region)
    y0, x0, y1, x1 = session.focus_window(region)
    assert y0 <= 430 and x0 <= 440 and y1 >= 470 and x1 >= 481
    assert session.current.hw == (y1 - y0, x1 - x0)
    np.testing.assert_array_equal(session.current.embedding.features, session.set_image(
        plane[y0:y1, x0:x1]).features)  # fmt: skip
    session.set_image(plane)
    with pytest.raises(PromptError, match="outside"):
        session.focus_window((850, 850, 950, 950))
    session.set_image(plane[:300, :300])
    assert session.focus_window((10, 10, 20, 20)) is None


def test_a_fork_never_moves_the_sessions_plane(session):
    """A fork (what the widget's jobs compute with) shares the model and the caches but
    not the current plane: its windows and planes leave the session's where they were,
    and what it embeds the session finds ready."""
    plane = np.random.default_rng(1).integers(0, 255, (900, 900)).astype(np.uint8)
    session.set_image(plane)
    window = session.focus_window((430, 440, 470, 480))
    context = session.current
    fork = session.fork()
    assert fork.predictor is session.predictor and fork.cache is session.cache
    assert fork.current is None and fork.tiled is None
    before = dict(session.everything.defaults)
    session.everything.defaults["points_per_side"] = 999  # a setting changed during a job
    try:
        assert fork.everything.defaults == before  # the job keeps the settings it began with
    finally:
        session.everything.defaults = before
    fork.set_image(plane)
    corner = fork.focus_window((10, 10, 20, 20))
    labels = np.zeros((900, 900), np.uint8)
    labels[5:30, 5:30] = 1
    fork.refine_labels(labels)
    fork.set_image(plane[:300, :300])
    assert session.current is context and session.tiled.window.yxyx == window
    assert session.last_refinement is None or session.last_refinement is not fork.last_refinement
    session.set_image(plane)
    with session.without_embedding():
        assert session.focus_window((10, 10, 20, 20)) == corner  # embedded by the fork
