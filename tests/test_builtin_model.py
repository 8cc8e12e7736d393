"""The shipped built-in model: loads offline by default and finds the clicked object.

These tests use the real weights in ``src/napari_segany/models/builtin.pt`` on
generated images whose true masks are known (seeds the training never used). The
floors are below the issue's targets, which this model does not reach (see
docs/models.md, "Metrics"): they check that the mask is on the prompted object and
guard the measured quality (each floor sits below the figure measured with the shipped
file, noted beside it).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from training.evaluate_builtin import best_overlap_ious

from napari_segany import SegAny
from napari_segany._sample_data import nuclei_scene_2d
from napari_segany.core import planes
from napari_segany.core.embeddings import ViewEmbeddings
from napari_segany.core.errors import ImageError, InputError
from napari_segany.core.everything.grid import GridParams, decode_grid
from napari_segany.core.image import to_model_rgb
from napari_segany.core.mask_ops import keep_clicked_components, masks_to_boxes
from napari_segany.core.progress import drain
from napari_segany.core.synthetic import generate_scene, interior_point_yx
from napari_segany.models.builtin import EVERYTHING_DEFAULTS, objects, snapping


@pytest.fixture(scope="module")
def builtin() -> SegAny:
    return SegAny(device="cpu", precision="fp32")  # no model argument: the built-in one


@pytest.fixture(scope="module")
def decoder_only() -> SegAny:
    """The built-in model with prompts answered by its decoder alone (no snapping to
    the foreground head's objects), to test the decoder's mask rules."""
    return SegAny(device="cpu", precision="fp32", refine=["clip_to_box", "clicked_parts"])


def _names(session: SegAny) -> list[str]:
    return [refiner.name for refiner in session.refiners]


def _prepared(session: SegAny):
    """(labels, (2, H, W) float16 logits, zoom) the current plane's prompts snap with."""
    context = session._current
    planes.prepare(context, session.refiners)
    found = context.prepared["snap_to_objects"]
    return found.labels, found.logits, found.zoom


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def _on_object(mask: np.ndarray, labels: np.ndarray, label: int) -> bool:
    """Most of the predicted pixels that fall on objects fall on object ``label``."""
    hit = labels[mask & (labels > 0)]
    return hit.size > 0 and np.bincount(hit).argmax() == label


def test_default_session_is_the_builtin_model_on_its_512_frame(builtin):
    assert builtin.predictor.name == "builtin"
    assert builtin.predictor.model.image_size == 512


def test_a_click_finds_the_clicked_nucleus(builtin):
    scene = nuclei_scene_2d()
    builtin.set_image(scene.image)
    ids, areas = np.unique(scene.labels[scene.labels > 0], return_counts=True)
    ious, right = [], []
    for label in ids[areas >= 40][:12]:
        truth = scene.labels == label
        click_yx = interior_point_yx(truth, edge_is_background=False)
        result = builtin.segment(points_yx=[click_yx], labels=[1])
        best = result.masks[int(np.argmax(result.scores))]
        ious.append(_iou(best, truth))
        right.append(_on_object(best, scene.labels, label))
    assert np.mean(right) >= 0.9, right  # measured 0.92 (11 of 12)
    assert np.mean(ious) >= 0.75, ious  # measured 0.88 (decoder alone: 0.78)


def test_a_box_finds_the_boxed_nucleus_on_another_size_and_dtype(builtin):
    scene = generate_scene(
        np.random.default_rng(31_337), (300, 420), kind="nuclei", radius=12, dtype="uint8"
    )
    builtin.set_image(scene.image)
    ids = np.unique(scene.labels[scene.labels > 0])[:10]
    boxes = []
    for label in ids:
        ys, xs = np.nonzero(scene.labels == label)
        boxes.append([ys.min(), xs.min(), ys.max(), xs.max()])
    result = builtin.segment(box_yxyx=boxes, multimask=False)
    ious = [_iou(result.masks[i, 0], scene.labels == label) for i, label in enumerate(ids)]
    assert np.mean(ious) >= 0.7, ious  # measured 0.82 (cut, not fitted: 0.77; decoder 0.69)


def test_box_masks_of_the_builtin_model_are_cut_to_the_box(builtin, decoder_only):
    """On by default for the built-in model only: the cut masks are the model's masks
    inside the box, the scores stay the model's, and the masks fit the objects better
    (the model's masks leak into touching neighbours past the box)."""
    from napari_segany.core import checkpoints, registry

    assert "clip_to_box" in _names(builtin)
    builtin = decoder_only
    path = checkpoints.packaged_checkpoint(registry.REGISTRY["builtin"])
    assert SegAny(str(path), device="cpu", precision="fp32").refiners == ()  # a file: off
    assert SegAny(device="cpu", precision="fp32", refine="none").refiners == ()
    scene = nuclei_scene_2d(seed=2)
    builtin.set_image(scene.image)
    ids = np.unique(scene.labels[scene.labels > 0])[:12]
    boxes = np.array([_box(scene.labels == label) for label in ids])
    cut = builtin.segment(box_yxyx=boxes, multimask=False)
    try:
        builtin.refiners = ["clicked_parts"]
        whole = builtin.segment(box_yxyx=boxes, multimask=False)
    finally:
        builtin.refiners = ["clip_to_box", "clicked_parts"]
    np.testing.assert_array_equal(cut.scores, whole.scores)
    inside = np.zeros_like(whole.masks)
    for index, (y0, x0, y1, x1) in enumerate(boxes):
        inside[index, :, y0 : y1 + 1, x0 : x1 + 1] = True
    np.testing.assert_array_equal(cut.masks, whole.masks & inside)
    assert (whole.masks & ~inside).any()  # the model's masks do leak past their box
    truth = [scene.labels == label for label in ids]
    cut_iou = np.mean([_iou(m[0], t) for m, t in zip(cut.masks, truth)])
    whole_iou = np.mean([_iou(m[0], t) for m, t in zip(whole.masks, truth)])
    assert cut_iou > whole_iou + 0.05, (cut_iou, whole_iou)  # measured 0.86 vs 0.72


def test_click_masks_of_the_builtin_model_keep_only_the_clicked_part(builtin, decoder_only):
    """On by default for the built-in model only: each candidate keeps its connected
    parts under the click, the scores stay the model's, the masks fit better."""
    from scipy import ndimage

    assert "clicked_parts" in _names(builtin)
    builtin = decoder_only
    with pytest.raises(InputError, match="Unknown refiner"):
        builtin.refiners = ["clicked_part"]
    assert _names(builtin) == ["clip_to_box", "clicked_parts"]  # unchanged by the refusal
    scene = nuclei_scene_2d(seed=3)
    builtin.set_image(scene.image)
    ids, areas = np.unique(scene.labels[scene.labels > 0], return_counts=True)
    kept_ious, whole_ious, dropped = [], [], 0
    for label in ids[areas >= 40][:12]:
        truth = scene.labels == label
        y, x = interior_point_yx(truth, edge_is_background=False)
        kept = builtin.segment(points_yx=[[y, x]], labels=[1])
        try:
            builtin.refiners = ["clip_to_box"]
            whole = builtin.segment(points_yx=[[y, x]], labels=[1])
        finally:
            builtin.refiners = ["clip_to_box", "clicked_parts"]
        np.testing.assert_array_equal(kept.scores, whole.scores)
        for cut, full in zip(kept.masks, whole.masks):
            regions, _ = ndimage.label(full, structure=np.ones((3, 3)))
            part = (
                regions == regions[int(round(y)), int(round(x))]
                if full[int(round(y)), int(round(x))]
                else full
            )
            np.testing.assert_array_equal(cut, part)
            dropped += int(full.sum() - cut.sum())
        best = int(np.argmax(kept.scores))
        kept_ious.append(_iou(kept.masks[best], truth))
        whole_ious.append(_iou(whole.masks[best], truth))
    assert dropped > 0  # the model's masks do have parts away from the clicked one
    # measured 0.79 vs 0.74
    assert np.mean(kept_ious) >= np.mean(whole_ious) + 0.02, (kept_ious, whole_ious)


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [ys.min(), xs.min(), ys.max(), xs.max()]


def _matched(found: np.ndarray, truth_labels: np.ndarray) -> int:
    """True objects whose most overlapping found object has IoU > 0.5 with them."""
    return int(np.sum(best_overlap_ious(truth_labels, found) > 0.5))


def test_everything_mode_finds_nuclei_with_its_foreground_head(builtin):
    scene = nuclei_scene_2d(seed=1)
    builtin.set_image(scene.image)
    found = builtin.segment_everything().labels  # the model's defaults: its head's objects
    matched, kept = _matched(found, scene.labels), len(np.unique(found)) - 1
    assert matched >= 36  # measured 42 of 65 (SAM's grid with calibrated thresholds: 31)
    assert matched / kept >= 0.5  # measured 42 of 60 kept (grid: 31 of 44)
    # SAM's point grid at SAM's thresholds keeps nothing of this model's masks; the
    # empty result says what to lower
    sam = dict(points_per_side=32, pred_iou_thresh=0.88, stability_score_thresh=0.95)
    with pytest.warns(UserWarning, match="Lower pred_iou_thresh"):
        grid = builtin.segment_everything(mode="grid", **sam, box_nms_thresh=0.7)
    assert grid.labels.max() == 0
    # the grid at its calibrated thresholds finds fewer than the head
    grid = builtin.segment_everything(
        mode="grid", pred_iou_thresh=0.45, stability_score_thresh=0.0, box_nms_thresh=0.02
    )
    assert 25 <= _matched(grid.labels, scene.labels) < matched  # measured 31


def test_prompts_snap_to_the_heads_objects(builtin, decoder_only):
    """On by default for the built-in model: boxes and agreeing clicks are answered
    with the foreground head's object, which fits the nuclei better than the decoder."""

    assert "snap_to_objects" in _names(builtin)
    assert "snap_to_objects" not in _names(decoder_only)
    scene = nuclei_scene_2d(seed=2)
    snapped_ious, decoder_ious = [], []
    for session in (builtin, decoder_only):
        session.set_image(scene.image)
    objects, logits, _ = _prepared(builtin)  # what the session snaps with
    assert objects.shape == scene.labels.shape and objects.max() >= 30  # measured 49
    assert logits.shape == (2, *objects.shape) and logits.dtype == np.float16
    for label in np.unique(scene.labels[scene.labels > 0])[:12]:
        truth = scene.labels == label
        box = _box(truth)
        snapped = builtin.segment(box_yxyx=box, multimask=False)
        decoded = decoder_only.segment(box_yxyx=box, multimask=False)
        np.testing.assert_array_equal(snapped.scores, decoded.scores)
        votes = np.bincount(objects[decoded.masks[0]], minlength=2)[1:]
        inside = np.zeros_like(truth)
        inside[box[0] : box[2] + 1, box[1] : box[3] + 1] = True
        assert not snapped.masks[0][~inside].any()  # never past the box
        if votes.any():  # the object most of the decoder's mask is on, fitted to the box
            label = int(votes.argmax()) + 1
            expected = snapping.fit_to_box(objects, label, box, logits[0], logits[1])
            np.testing.assert_array_equal(snapped.masks[0], expected)
        snapped_ious.append(_iou(snapped.masks[0], truth))
        decoder_ious.append(_iou(decoded.masks[0], truth))
    # measured 0.938 vs 0.859 (the object cut to the box, session 9's rule: 0.936)
    assert np.mean(snapped_ious) >= np.mean(decoder_ious) + 0.04, (snapped_ious, decoder_ious)


def test_everything_masks_are_the_parts_of_the_whole_masks_under_their_points(builtin):
    scene = nuclei_scene_2d(seed=1)
    builtin.set_image(scene.image)
    rgb, embedding = to_model_rgb(scene.image), builtin.current.embedding
    height = scene.image.shape[0]

    def grid(rule: bool):
        params = GridParams(points_per_side=8, clicked_component_only=rule)
        return drain(decode_grid(builtin.predictor, rgb, params, embedding))

    whole, parts = grid(False), grid(True)
    assert len(whole) == len(parts) == 3 * 64
    changed = 0
    for index in range(len(whole)):
        mask = whole.runs[0].decode_rows(index, 0, height)
        point_yx = whole.points_xy[index, ::-1][None]
        expected = keep_clicked_components(mask[None], point_yx, np.array([1]))[0]
        got = parts.runs[0].decode_rows(index, 0, height)
        np.testing.assert_array_equal(got, expected)
        assert parts.area[index] == got.sum()
        np.testing.assert_array_equal(parts.boxes_xyxy[index], masks_to_boxes(got[None])[0])
        row, col = np.clip(np.floor(point_yx[0] + 0.5).astype(int), 0, np.array(mask.shape) - 1)
        stability, whole_stability = parts.stability_score[index], whole.stability_score[index]
        if not mask[row, col]:  # a mask off its point stays whole, statistics and all
            assert stability == pytest.approx(whole_stability, nan_ok=True)
        elif (expected != mask).any():
            changed += 1
        else:  # one piece: the loose part under the point is at most the whole loose mask
            assert stability >= whole_stability - 1e-6
    assert changed >= 5  # the rule had something to do on this plane
    np.testing.assert_array_equal(parts.predicted_iou, whole.predicted_iou)


def test_everything_mode_uses_the_models_calibrated_defaults(builtin):
    expected = dict(EVERYTHING_DEFAULTS)
    assert builtin.everything.defaults == expected
    assert expected["pred_iou_thresh"] < 0.88  # SAM's would keep nothing (test below)
    chosen = builtin.everything.merged(pred_iou_thresh=0.7)
    assert chosen == {**expected, "pred_iou_thresh": 0.7, "clicked_component_only": True}


def test_planes_are_prepared_once_and_kept_for_recent_planes(builtin):
    from napari_segany.core.planes import PLANES_KEPT

    scenes = [nuclei_scene_2d(seed=seed) for seed in range(PLANES_KEPT + 1)]
    builtin._planes.clear()  # none of these planes prepared by an earlier test
    first = scenes[0].image
    assert builtin.prepare(first, run=False) is None
    builtin.set_image(first)
    assert builtin.prepare(first, run=False) is not None
    objects = _prepared(builtin)[0]
    builtin.set_image(first)
    assert _prepared(builtin)[0] is objects  # prepared once
    for scene in scenes[1:]:
        builtin.set_image(scene.image)
        assert _prepared(builtin)[0].shape == scene.labels.shape
    assert builtin.prepare(first, run=False) is None  # the oldest plane's were dropped
    assert builtin.prepare(scenes[-1].image, run=False) is not None
    builtin.prepare(first)  # prepared again, equal; the last plane stays current
    assert builtin.prepare(first, run=False) is not None
    assert builtin.current.embedding is builtin.prepare(scenes[-1].image, refine=False)
    builtin.set_image(first)
    again = _prepared(builtin)[0]
    assert again is not objects
    np.testing.assert_array_equal(again, objects)


def _small_nuclei_scene(seed: int = 0):
    """(768, 768) uint16, dense nuclei of radius 4: 2.7 px in the 512 px model frame."""
    rng = np.random.default_rng(20_000 + seed)
    return generate_scene(rng, (768, 768), kind="nuclei", radius=4, coverage=0.3, dtype="uint16")


def test_small_nuclei_are_found_on_zoomed_tiles(builtin):
    """The head's 8 px cells merge nuclei a few pixels across; zoomed in, it separates
    them (docs/models.md, "Zoom")."""
    from training.evaluate_builtin import matching_f1

    scene = _small_nuclei_scene()
    builtin.set_image(scene.image)
    rgb, embedding = to_model_rgb(scene.image), builtin.current.embedding
    model, embed = builtin.predictor.model, builtin.predictor.embed
    automatic = objects.find_objects(model, embedding, rgb, embed)
    whole = objects.find_objects(model, embedding, rgb, embed, zoom=1)
    assert automatic.zoom >= 3  # measured 4
    f1_zoomed = matching_f1(scene.labels, automatic.labels)[0]
    f1_whole = matching_f1(scene.labels, whole.labels)[0]
    assert f1_zoomed >= 0.7 and f1_zoomed > f1_whole + 0.5  # measured 0.02 -> 0.83
    # the session's objects (snapped prompts) and everything mode use the same zoom
    np.testing.assert_array_equal(_prepared(builtin)[0], automatic.labels)
    result = builtin.segment_everything()
    assert len(result.objects) == automatic.labels.max()
    fixed = builtin.segment_everything(head_zoom=1)
    assert len(fixed.objects) == whole.labels.max()
    # with only the embedding, nothing can be zoomed or turned: the whole plane at once
    builtin.set_image(None, embedding=replace(embedding))  # an embedding the session has not seen
    one_view = builtin.segment_everything(head_zoom=1, head_views=1)
    np.testing.assert_array_equal(builtin.segment_everything().labels > 0, one_view.labels > 0)
    # given with its plane (as the widget gives it), the embedding is zoomed as before
    builtin._planes.clear()
    builtin.set_image(scene.image, embedding=embedding)
    assert builtin.prepare(scene.image, run=False) is None
    np.testing.assert_array_equal(_prepared(builtin)[0], automatic.labels)
    assert builtin.prepare(scene.image, run=False) is not None
    assert len(builtin.segment_everything().objects) == automatic.labels.max()
    with pytest.raises(ImageError, match="embedding is for a"):
        builtin.set_image(scene.image[:100], embedding=embedding)
    assert builtin.current.embedding is embedding  # unchanged by the refused call


def test_a_snapped_click_is_split_with_its_guide_from_the_zoomed_tile(builtin, decoder_only):
    """On a zoomed plane the decoder's mask that splits a clicked object comes from the
    tile the head found it on, decoded in two views (core.click_guide): far closer to
    the nucleus than the whole plane's mask (docs/models.md, "The click's guide")."""
    from napari_segany.core.mask_ops import keep_clicked_components
    from napari_segany.models.builtin import click_guide

    scene = _small_nuclei_scene(seed=1)
    rgb = to_model_rgb(scene.image)
    for session in (builtin, decoder_only):
        session.set_image(scene.image)
    objects, logits, zoom = _prepared(builtin)
    assert zoom >= 3
    predictor, embed = builtin.predictor, builtin.predictor.embed
    embedded = []
    predictor.embed = lambda image: embedded.append(image.shape) or embed(image)
    guide_ious, plane_ious, answer_ious = [], [], []
    views_of = {}  # window -> its two views, embedded here
    try:
        ids = np.unique(scene.labels[scene.labels > 0])
        for label in np.random.default_rng(0).choice(ids, 12, replace=False):
            truth = scene.labels == label
            click = np.array([interior_point_yx(truth)])
            window = click_guide.click_window(scene.labels.shape, zoom, click)
            y0, y1, x0, x1 = window
            result = builtin.segment(points_yx=click, labels=[1])
            assert embedded == []  # the head's pass embedded the tiles' two views
            decoded = decoder_only.segment(points_yx=click, labels=[1])
            best = int(np.argmax(decoded.scores))
            if window not in views_of:
                views = click_guide.window_views(rgb, window)  # tiles: enlarged zoom x
                views_of[window] = tuple(embed(view, zoom) for view in views)
            views = views_of[window]
            guide = click_guide.guide_mask(predictor, views, window, truth.shape, click, [1])
            guide = keep_clicked_components(guide[None], click, np.array([1]))[0]
            expected = decoded.masks.copy()
            expected[best] = guide
            expected = snapping.snap_to_objects(
                expected, decoded.scores, objects, click, np.array([1]), None,
                border_logits=logits[1], foreground_logits=logits[0],
            )  # fmt: skip
            np.testing.assert_array_equal(result.masks, expected)
            guide_ious.append(_iou(guide, truth))
            plane_ious.append(_iou(decoded.masks[best], truth))
            answer_ious.append(_iou(result.masks[best], truth))
        # a click never embeds: without its views (not prepared), it goes unguided
        context = builtin._current
        kept_views, context.views = context.views, ViewEmbeddings(embed)
        again = builtin.segment(points_yx=click, labels=[1])
        context.views = kept_views
        assert embedded == []
        unguided = snapping.snap_to_objects(
            decoded.masks, decoded.scores, objects, click, np.array([1]), None,
            border_logits=logits[1], foreground_logits=logits[0],
        )  # fmt: skip
        np.testing.assert_array_equal(again.masks, unguided)
    finally:
        del predictor.embed  # the bound method again
    # measured: the guide 0.877 against the whole plane's mask 0.633; the answer 0.910
    assert np.mean(guide_ious) >= np.mean(plane_ious) + 0.15, (guide_ious, plane_ious)
    assert np.mean(answer_ious) >= 0.85, answer_ious


def test_on_a_plane_not_zoomed_the_guide_reuses_the_clicks_own_decode(builtin, decoder_only):
    """At zoom 1 the guide's first view is the plane itself: the click's own decode
    serves for it (one more decode per click, the turned plane's), with the masks the
    two views decoded afresh give."""
    from napari_segany.core.mask_ops import keep_clicked_components
    from napari_segany.models.builtin import click_guide

    scene = nuclei_scene_2d(seed=3)
    rgb = to_model_rgb(scene.image)
    for session in (builtin, decoder_only):
        session.set_image(scene.image)
    objects, logits, zoom = _prepared(builtin)
    assert zoom == 1
    whole = (0, *scene.labels.shape[:1], 0, scene.labels.shape[1])
    predictor, predict = builtin.predictor, builtin.predictor.predict
    decodes = []
    predictor.predict = lambda *args, **kwargs: decodes.append(1) or predict(*args, **kwargs)
    views = tuple(map(predictor.embed, click_guide.window_views(rgb, whole)))
    try:
        for label in np.unique(scene.labels[scene.labels > 0])[:5]:
            click = np.array([interior_point_yx(scene.labels == label)])
            decodes.clear()
            result = builtin.segment(points_yx=click, labels=[1])
            assert len(decodes) == 2  # the click's and the turned plane's
            decoded = decoder_only.segment(points_yx=click, labels=[1])
            guide = click_guide.guide_mask(predictor, views, whole, rgb.shape[:2], click, [1])
            expected = decoded.masks.copy()
            best = int(np.argmax(decoded.scores))
            expected[best] = keep_clicked_components(guide[None], click, np.array([1]))[0]
            expected = snapping.snap_to_objects(
                expected, decoded.scores, objects, click, np.array([1]), None,
                border_logits=logits[1], foreground_logits=logits[0],
            )  # fmt: skip
            np.testing.assert_array_equal(result.masks, expected)
    finally:
        del predictor.predict


def test_a_click_on_a_plane_known_only_by_its_embedding_is_snapped_without_a_guide(
    builtin, decoder_only
):
    """After set_image(None, embedding=...) without the plane there are no pixels to cut the
    guide's views from: the click is split with the decoder's own mask (the session-11
    guide raised a TypeError here)."""
    scene = nuclei_scene_2d(seed=4)
    for session in (builtin, decoder_only):
        session.set_image(scene.image)
    builtin.set_image(
        None, embedding=replace(builtin.current.embedding)
    )  # an embedding never seen with pixels
    objects, logits, zoom = _prepared(builtin)
    assert zoom == 1
    for label in np.unique(scene.labels[scene.labels > 0])[:4]:
        click = np.array([interior_point_yx(scene.labels == label)])
        result = builtin.segment(points_yx=click, labels=[1])
        decoded = decoder_only.segment(points_yx=click, labels=[1])
        expected = snapping.snap_to_objects(
            decoded.masks, decoded.scores, objects, click, np.array([1]), None,
            border_logits=logits[1], foreground_logits=logits[0],
        )  # fmt: skip
        np.testing.assert_array_equal(result.masks, expected)
