"""Curation with the built-in model: edits by prompts, history, provenance and replay."""

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_segany import SegAny, load_labels
from napari_segany.core.errors import InputError, LabelsDtypeError
from napari_segany.core.synthetic import generate_scene, interior_point_yx
from napari_segany.curation import Curation, ProvenanceError, replay
from napari_segany.saving import sidecar_path


@pytest.fixture(scope="module")
def session():
    return SegAny("builtin", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def scenes():
    found = [generate_scene(np.random.default_rng(s), (256, 256), "nuclei", radius=12.0)
             for s in (11, 12)]  # fmt: skip
    return np.stack([s.image for s in found]), np.stack([s.labels for s in found])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max(1, (a | b).sum())


def _largest(truth: np.ndarray, count: int) -> list[int]:
    ids, areas = np.unique(truth[truth > 0], return_counts=True)
    return [int(i) for i in ids[np.argsort(-areas)][:count]]


def _touching_pair(truth: np.ndarray) -> tuple[int, int]:
    """Two nuclei that touch (a 1-pixel dilation of one meets the other)."""
    for obj in _largest(truth, 40):
        ring = ndimage.binary_dilation(truth == obj, iterations=2) & (truth != obj)
        others = np.unique(truth[ring & (truth > 0)])
        if others.size:
            return obj, int(others[0])
    raise AssertionError("no touching nuclei in the scene")


def test_add_writes_new_ids_on_background_only(session, scenes):
    image, truth = scenes
    labels = np.zeros(truth.shape, np.uint16)
    first = _largest(truth[0], 1)[0]
    labels[0][truth[0] == first] = 40  # an object the user has already
    cur = Curation(session, image, labels)
    y, x = interior_point_yx(truth[0] == first, edge_is_background=False)
    ids = cur.add(points_yx=[[y, x]], plane=0)  # a click on the existing object
    assert ids in ([], [41])  # a new id above every id, never written over id 40
    assert (labels[0][truth[0] == first] == 40).all() and labels is cur.labels
    second = _largest(truth[1], 2)[1]
    y, x = interior_point_yx(truth[1] == second, edge_is_background=False)
    new = cur.add(points_yx=[[y, x]], plane=1)
    assert new and new[0] > 40 and _iou(labels[1] == new[0], truth[1] == second) > 0.7


def test_a_correction_goes_to_its_object_and_touches_no_other(session, scenes):
    image, truth = scenes
    plane = truth[0].astype(np.int32)
    target = _largest(truth[0], 3)[2]
    eroded = ndimage.binary_erosion(truth[0] == target, iterations=4)
    labels = plane.copy()
    labels[(plane == target) & ~eroded] = 0
    others = labels.copy()
    cur = Curation(session, image[0], labels)
    before = _iou(labels == target, truth[0] == target)
    ys, xs = np.nonzero((truth[0] == target) & ~eroded)
    cur.correct(target, points_yx=[[ys[0], xs[0]]], labels=[1])
    after = _iou(labels == target, truth[0] == target)
    assert after > before + 0.1
    other_objects = (others != 0) & (others != target)
    np.testing.assert_array_equal(labels[other_objects], others[other_objects])


def test_split_gives_the_cut_part_a_new_id_and_merge_joins_them(session, scenes):
    image, truth = scenes
    a, b = _touching_pair(truth[0])
    labels = truth[0].astype(np.uint32)
    labels[labels == b] = a  # two nuclei under one id
    cur = Curation(session, image[0], labels)
    y, x = interior_point_yx(truth[0] == b, edge_is_background=False)
    new = cur.split(a, points_yx=[[y, x]])
    assert new == int(truth[0].max()) + 1
    assert _iou(labels == a, truth[0] == a) > 0.6 and _iou(labels == new, truth[0] == b) > 0.6
    assert cur.merge([a, new]) == a and not (labels == new).any()
    assert cur.delete(a) == (truth[0] == a).sum() + (truth[0] == b).sum()
    with pytest.raises(InputError, match="not on this plane"):
        cur.split(a, points_yx=[[y, x]])


def test_a_split_computed_while_its_object_changed_writes_nothing(session, scenes):
    """The widget computes a split in the background: if the object's pixels change
    meanwhile (a brush stroke), writing it is refused and the labels stay as they are."""
    image, truth = scenes
    a, b = _touching_pair(truth[0])
    labels = truth[0].astype(np.uint32)
    labels[labels == b] = a
    cur = Curation(session, image[0], labels)
    y, x = interior_point_yx(truth[0] == b, edge_is_background=False)
    answer = cur.split_answer(a, points_yx=[[y, x]])
    np.testing.assert_array_equal(labels[truth[0] == b], a)  # nothing written yet
    ys, xs = np.nonzero(labels == 0)
    labels[ys[0], xs[0]] = a  # a stroke adds a pixel to the object
    painted = labels.copy()
    with pytest.raises(InputError, match="changed while"):
        cur.apply_split(answer)
    np.testing.assert_array_equal(labels, painted)
    labels[ys[0], xs[0]] = 0
    new = cur.apply_split(answer)  # the object as it was: written
    assert _iou(labels == new, truth[0] == b) > 0.6 and len(cur.steps) == 1


def test_undo_redo_sequences_across_planes_restore_exact_states(session, scenes):
    image, truth = scenes
    cur = Curation(session, image, truth.astype(np.uint16))
    states = [cur.labels.copy()]
    ids0, ids1 = _largest(truth[0], 3), _largest(truth[1], 3)
    cur.delete(ids0[0], plane=0)
    states.append(cur.labels.copy())
    cur.merge(ids1[:2], plane=1)
    states.append(cur.labels.copy())
    cur.refine(plane=1)
    states.append(cur.labels.copy())
    cur.delete([ids0[1], ids1[2]])  # both planes, one step
    states.append(cur.labels.copy())
    for state in reversed(states[:-1]):
        assert cur.undo() is not None
        np.testing.assert_array_equal(cur.labels, state)
    assert cur.undo() is None
    for state in states[1:3]:
        cur.redo()
        np.testing.assert_array_equal(cur.labels, state)
    y, x = interior_point_yx(truth[1] == ids1[2], edge_is_background=False)
    cur.delete(ids1[2], plane=1)  # a new step: the rest of the redo is gone
    assert cur.redo() is None and cur.history.can_undo()


def test_replay_makes_the_saved_labels_bit_for_bit(session, scenes, tmp_path):
    image, truth = scenes
    start = truth.astype(np.uint16)
    start[0][ndimage.binary_dilation(start[0] == _largest(truth[0], 1)[0], iterations=3)] = 0
    cur = Curation(session, image, start.copy())
    first = _largest(truth[0], 1)[0]
    y, x = interior_point_yx(truth[0] == first, edge_is_background=False)
    cur.add(points_yx=[[y, x]], plane=0)
    cur.add(box_yxyx=[[10, 10, 60, 70], [100, 120, 150, 190]], plane=1, overwrite=True)
    cur.refine(plane=0)
    cur.undo()
    cur.redo()
    cur.merge(_largest(truth[1], 2), plane=1)
    cur.undo()
    cur.everything(plane=1, mode="ais")
    before = cur.labels[0].copy()
    cur.labels[0][100:110, 30:37] = 77  # a brush stroke, made by other means
    cur.labels[0][120, 5] = 0
    step = cur.record_pixels("paint", [((0,), before)])
    assert step.pixels == int((before != cur.labels[0]).sum())
    path = cur.save(tmp_path / "curated.tif")
    record = json.loads(sidecar_path(path).read_text())
    assert [s["op"] for s in record["steps"]] == [
        "add", "add", "refine", "undo", "redo", "merge", "undo", "everything", "pixels",
    ]  # fmt: skip
    assert record["model"]["name"] == session.predictor.name
    assert set(record["image"]["planes_xxh3_128"]) == {"0", "1"}
    again = replay(sidecar_path(path), image, start_labels=start, segany=session)
    assert again.identical
    np.testing.assert_array_equal(again.labels, load_labels(path))
    fresh = replay(record, image, start_labels=start)  # a session made from the record
    assert fresh.identical


def test_replay_refuses_another_image_model_or_start(session, scenes, tmp_path):
    image, truth = scenes
    cur = Curation(session, image)
    y, x = interior_point_yx(truth[1] == _largest(truth[1], 1)[0], edge_is_background=False)
    cur.add(points_yx=[[y, x]], plane=1)
    record = cur.provenance()
    edited = image.copy()
    edited[1, 5, 5] += 1
    with pytest.raises(ProvenanceError, match=r"plane \(1,\) differ"):
        replay(record, edited)
    unused_plane_blank = image.copy()
    unused_plane_blank[0] = 0  # plane 0 was never segmented: not checked, not needed
    assert replay(record, unused_plane_blank, segany=session).identical
    with pytest.raises(ProvenanceError, match="shape"):
        replay(record, image[:, :100])
    with pytest.raises(ProvenanceError, match="starts from"):
        replay(record, image, start_labels=truth.astype(np.uint32))
    other = SegAny("builtin", device="cpu", precision="fp32")
    with __import__("torch").no_grad():
        next(other.predictor.model.parameters()).add_(0.01)
    with pytest.raises(ProvenanceError, match="other weights"):
        replay(record, image, segany=other)
    with pytest.raises(ProvenanceError, match="not a napari-segany curation record"):
        replay({"steps": []}, image)


def test_labels_of_any_integer_dtype_and_bad_labels(session, scenes):
    image, truth = scenes
    missed = truth[0] == _largest(truth[0], 1)[0]
    mask = np.where((truth[0] > 0) & ~missed, 255, 0).astype(np.uint8)  # a 0/255 mask
    cur = Curation(session, image[0], mask)
    outcomes = cur.refine()
    assert [o.obj_id for o in outcomes] == [255] and set(np.unique(mask)) <= {0, 255}
    with pytest.raises(LabelsDtypeError, match="256"):  # a new object on the missed one:
        cur.add(points_yx=[interior_point_yx(missed)])  # id 256 does not fit uint8
    assert set(np.unique(mask)) <= {0, 255} and len(cur.steps) == 1
    with pytest.raises(InputError, match="integer ids"):
        Curation(session, image[0], truth[0].astype(np.float32))
    with pytest.raises(InputError, match="do not fit"):
        Curation(session, image, truth[0])
    with pytest.raises(InputError, match="is not a plane"):
        Curation(session, image, truth).delete(1, plane=5)


def test_settings_dtype_and_split_ids_are_recorded_and_replayed(session, scenes):
    from napari_segany.core.refine_labels import RefineRules

    image, truth = scenes
    start = truth.astype(np.uint8)
    start[1][start[1] > 0] += 100  # slice 1 holds the larger ids
    a, b = _touching_pair(truth[0])
    start[0][truth[0] == b] = a  # a merged pair on slice 0
    cur = Curation(session, image, start.copy())
    cur.use_labels(cur.labels.astype(np.uint16))  # widened, as the widget does on consent
    outcomes = cur.refine([a], plane=0, split=True)
    new_ids = [i for o in outcomes for i in o.new_ids]
    assert all(i > start.max() for i in new_ids)  # above every slice's ids, not slice 0's
    session.refine_rules = RefineRules(min_score=0.9)  # a setting the next edit depends on
    try:
        cur.refine(plane=1)
        record = cur.provenance()
        ops = [s["op"] for s in record["steps"]]
        assert ops == ["dtype", "refine", "model", "refine"]
        assert record["steps"][2]["model"]["refine_rules"]["min_score"] == 0.9
        session.refine_rules = RefineRules()  # replay must set the recorded rules itself
        again = replay(record, image, start_labels=start, segany=session)
        assert again.identical and again.labels.dtype == np.uint16
    finally:
        session.refine_rules = RefineRules()


def test_channel_axis_planes_and_a_record_that_switched_images(session, scenes):
    image, truth = scenes
    two_channels = np.stack([image, image // 2], axis=1)  # (Z, C, H, W)
    cur = Curation(session, two_channels, truth.astype(np.int32), channel_axis=0)
    assert cur.labels.shape == truth.shape
    with pytest.raises(InputError, match="channel_axis"):
        Curation(session, two_channels, truth.astype(np.int32))
    assert Curation(session, two_channels, channel_axis=0).labels.shape == truth.shape
    other = Curation(session, image)
    other.use_image(image.copy())
    with pytest.raises(ProvenanceError, match="another image"):
        replay(other.provenance(), image, segany=session)


def test_add_follows_the_commit_rules_of_a_labels_layer():
    """Overlapping boxes with overwrite: a later mask writes over an earlier one; an
    object with no free pixel takes no id (the ids stay consecutive)."""
    from napari_segany.core.results import SegmentResult

    labels = np.zeros((1, 10, 10), np.uint16)
    labels[0, 0:3, 0:3] = 5
    cur = Curation(object(), np.zeros((1, 10, 10), np.uint8), labels)
    masks = np.zeros((3, 1, 10, 10), bool)
    masks[0, 0, 2:6, 2:6] = True
    masks[1, 0, 4:8, 4:8] = True
    masks[2, 0, 0:2, 0:2] = True  # inside object 5 only
    result = SegmentResult(masks, np.ones((3, 1), np.float32), np.zeros((3, 1, 4, 4)))
    assert cur.add(box_yxyx=np.zeros((3, 4)), plane=0, result=result, overwrite=True) == [6, 7, 8]
    assert labels[0, 5, 5] == 7 and labels[0, 2, 2] == 6 and labels[0, 1, 1] == 8
    labels[0] = 0
    labels[0, 0:3, 0:3] = 5
    cur = Curation(object(), np.zeros((1, 10, 10), np.uint8), labels)
    assert cur.add(box_yxyx=np.zeros((3, 4)), plane=0, result=result) == [6, 7]
    assert labels[0, 5, 5] == 6 and labels[0, 6, 6] == 7 and labels[0, 1, 1] == 5


def test_corrections_on_a_tiled_plane_are_the_ones_in_their_windows(session):
    """On a plane seen window by window (the default tiling of a plane over twice the
    model's frame), a correction is decoded in the window holding the object and the
    click: the labels become, bit for bit, what the same correction of that window cut
    out as a plane of its own gives, nothing outside the window changes, and the
    objects get closer to their nuclei."""
    scene = generate_scene(np.random.default_rng(5), (1100, 1100), "nuclei", radius=12.0)
    low, high = np.percentile(scene.image, [0.5, 99.8])  # uint8: read as it is, no limits
    image = (np.clip((scene.image - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    assert session.tiling_of(image) is not None
    truth = scene.labels.astype(np.int32)
    ids, areas = np.unique(truth[truth > 0], return_counts=True)
    before, after = [], []
    for target in (int(i) for i in ids[np.argsort(-areas)][:3]):
        labels = truth.copy()
        labels[(truth == target) & ~ndimage.binary_erosion(truth == target, iterations=3)] = 0
        start = labels.copy()
        ys, xs = np.nonzero((truth == target) & (labels == 0))
        click = [[ys[len(ys) // 2], xs[len(xs) // 2]]]  # on the part the labels lack
        Curation(session, image, labels).correct(target, points_yx=click, labels=[1])
        assert session.tiled.window in session.tiled.windows  # a grid window holds it
        y0, x0, y1, x1 = session.tiled.window.yxyx
        outside = np.ones(truth.shape, bool)
        outside[y0:y1, x0:x1] = False
        np.testing.assert_array_equal(labels[outside], start[outside])
        crop = start[y0:y1, x0:x1].copy()
        alone = Curation(session, image[y0:y1, x0:x1], crop)  # one pass
        alone.correct(target, points_yx=np.subtract(click, (y0, x0)), labels=[1])
        np.testing.assert_array_equal(labels[y0:y1, x0:x1], crop)
        before.append(_iou(start == target, truth == target))
        after.append(_iou(labels == target, truth == target))
    assert np.mean(after) > np.mean(before) + 0.05  # (as corrections of planes that fit)


def test_an_objects_prompts_from_its_mask_are_its_prompts_in_the_plane(scenes):
    """A correction finds the object's prompts from its mask alone (fast on large
    planes): the same point and box as ``object_prompts`` on the whole plane gives,
    objects at the edges too."""
    from napari_segany.core.refine_labels import RefineRules, mask_prompt, object_prompts

    _, truth = scenes
    labels = truth[0]
    rules = RefineRules()
    ids = [int(i) for i in np.unique(labels) if i]
    edge = [i for i in ids if (labels[[0, -1]] == i).any() or (labels[:, [0, -1]] == i).any()]
    assert edge  # objects cut by the plane's border are among them
    for obj_id, whole in zip(ids, object_prompts(labels, ids, rules)):
        assert mask_prompt(labels == obj_id, obj_id, rules) == whole
