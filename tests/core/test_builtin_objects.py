"""Everything mode from a foreground head: seeded watershed, runs, scores, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany.core.embeddings import ViewEmbeddings
from napari_segany.core.errors import CheckpointError, InputError
from napari_segany.core.everything import GridProposer, pick_proposer, split_params
from napari_segany.core.everything.candidates import label_runs
from napari_segany.core.loading import load_model
from napari_segany.core.mask_runs import MaskRuns
from napari_segany.core.model.build import build_sam
from napari_segany.core.model.foreground_head import ForegroundHead
from napari_segany.core.plugins import PlaneContext
from napari_segany.core.predictor import Predictor
from napari_segany.core.progress import drain
from napari_segany.models.builtin import objects, proposer, snapping
from napari_segany.models.builtin.proposer import ForegroundParams, ForegroundProposer


def _two_touching_discs(size: int = 64) -> np.ndarray:
    """Labels 1 and 2: discs of radius 12 whose centres are 22 px apart, cut where
    they overlap at the line half-way between them."""
    rows, cols = np.mgrid[:size, :size]
    first = (rows - 32) ** 2 + (cols - 20) ** 2 <= 144
    second = (rows - 32) ** 2 + (cols - 42) ** 2 <= 144
    labels = np.zeros((size, size), np.int32)
    labels[first & (cols <= 30)] = 1
    labels[second & (cols >= 31)] = 2
    return labels


def _logits_of(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground +4 / -4; border +4 on object pixels next to another value."""
    foreground = np.where(labels > 0, 4.0, -4.0)
    edge = np.zeros(labels.shape, bool)
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[1:] != labels[:-1]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    border = np.where(edge & (labels > 0), 4.0, -4.0)
    return foreground, border


def test_touching_objects_are_separated_at_their_border():
    truth = _two_touching_discs()
    labels, seeds_yx = objects.seeded_objects(*_logits_of(truth), min_seed_area=4)
    assert labels.max() == 2 and len(seeds_yx) == 2
    for found in (1, 2):
        (row, col) = np.floor(seeds_yx[found - 1]).astype(int)
        matching = truth[row, col]
        assert matching > 0
        np.testing.assert_array_equal(labels == found, truth == matching)


def test_seeds_sit_at_the_most_interior_pixel():
    truth = _two_touching_discs()
    _, seeds_yx = objects.seeded_objects(*_logits_of(truth), min_seed_area=4)
    # the first disc's interior is widest on its centre row, about its centre column
    first = seeds_yx[np.argmin(seeds_yx[:, 1])]
    assert abs(first[0] - 32.5) <= 1.0 and abs(first[1] - 20.5) <= 2.0


def test_seeds_smaller_than_the_minimum_area_give_no_object():
    truth = np.zeros((32, 32), np.int32)
    truth[4:14, 4:14] = 1  # interior 8 x 8 = 64 px
    truth[20:24, 20:24] = 2  # interior 2 x 2 = 4 px
    labels, seeds_yx = objects.seeded_objects(*_logits_of(truth), min_seed_area=5)
    assert labels.max() == 1 and len(seeds_yx) == 1
    np.testing.assert_array_equal(labels == 1, truth == 1)
    labels, _ = objects.seeded_objects(*_logits_of(truth), min_seed_area=4)
    assert labels.max() == 2


def test_nothing_found_on_background():
    empty = np.full((16, 16), -3.0)
    labels, seeds_yx = objects.seeded_objects(empty, empty, min_seed_area=1)
    assert labels.max() == 0 and seeds_yx.shape == (0, 2)


def test_logits_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        objects.seeded_objects(np.zeros((4, 4)), np.zeros((4, 5)), min_seed_area=1)


def test_label_runs_decode_to_every_object():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (23, 17)).astype(np.int32)
    labels[labels == 3] = 0  # an object without pixels: no runs
    edges, offsets = label_runs(labels, 4)
    runs = MaskRuns(edges, offsets, labels.shape)
    assert len(runs) == 4
    for index in range(4):
        np.testing.assert_array_equal(runs.decode_rows(index, 0, 23), labels == index + 1)
        np.testing.assert_array_equal(runs.decode_rows(index, 5, 9), (labels == index + 1)[5:9])


def test_object_scores_are_mean_probability_and_confident_share():
    labels = np.array([[1, 1, 2, 0]], np.int32)
    logits = np.array([[0.0, 2.0, -1.0, 5.0]])
    probability, confident = proposer.object_scores(logits, labels, 2, offset=1.0)
    sigmoid = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0])))
    np.testing.assert_allclose(probability, [sigmoid[:2].mean(), sigmoid[2]], rtol=1e-6)
    np.testing.assert_allclose(confident, [0.5, 0.0])


def _headed_model(hidden: int = 1):
    torch.manual_seed(0)
    model = build_sam("conv_s")
    model.foreground_head = ForegroundHead(model.prompt_encoder.embed_dim, 8, hidden).eval()
    return model


def test_a_checkpoint_with_a_head_loads_it_with_its_hidden_layers(tmp_path):
    model = _headed_model(hidden=2)
    path = tmp_path / "headed.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model(path, device="cpu").model
    assert len(loaded.foreground_head.hidden) == 2
    pixels = torch.randn(1, 3, 512, 512)
    with torch.inference_mode():
        embedding = loaded.encode(pixels)
        np.testing.assert_array_equal(
            loaded.foreground(embedding).numpy(), model.foreground(embedding).numpy()
        )


def test_a_head_of_the_wrong_width_is_refused(tmp_path):
    state = _headed_model().state_dict()
    state["foreground_head.project.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="foreground_head.project.weight"):
        load_model(path, device="cpu")


def _propose(predictor, rgb, **params):
    """The foreground proposer on a plane, as a session runs it."""
    plane = PlaneContext(predictor, predictor.embed(rgb), rgb, ViewEmbeddings(predictor.embed))
    return drain(ForegroundProposer().propose(plane, ForegroundParams(**params)))


def test_foreground_proposals_need_a_head_and_a_known_mode():
    predictor = Predictor(build_sam("conv_s"), device="cpu")
    rgb = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InputError, match="no foreground head"):
        _propose(predictor, rgb)
    proposers = (GridProposer(), ForegroundProposer())
    with pytest.raises(InputError, match="Unknown everything mode 'seeds'"):
        pick_proposer(proposers, "seeds", "ais")
    assert pick_proposer(proposers, "auto", "ais") is proposers[1]
    # the head's former mode name is still accepted, and not listed
    assert pick_proposer(proposers, "foreground", "grid") is proposers[1]
    # the grid's parameters are accepted and not used by the head's proposals
    params, _ = split_params(proposers[1], proposers, crop_n_layers=1, head_zoom=2)
    assert params == ForegroundParams(head_zoom=2)
    with pytest.raises(InputError, match="Unknown everything-mode parameter"):
        split_params(proposers[1], proposers, crop_layers=1)


def test_foreground_candidates_are_the_watershed_objects_of_the_head():
    model = _headed_model(hidden=0)
    with torch.no_grad():  # random weights, enlarged: blobs of foreground, little border
        model.foreground_head.project.weight.mul_(50.0)
        model.foreground_head.project.bias[64:] = -3.0  # the border channel's pixels
    predictor = Predictor(model, device="cpu")
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)
    embedding = predictor.embed(rgb)
    candidates = _propose(predictor, rgb, head_zoom=1, head_views=1)
    logits = objects.head_logits(predictor.model, embedding)
    assert logits.shape == (2, 96, 160)
    labels, seeds_yx = objects.plane_objects(logits, embedding)
    # the minimum seed area is in model-frame pixels: 160 px are 512 there
    area = round(objects.MIN_SEED_AREA * (160 / 512) ** 2)
    np.testing.assert_array_equal(labels, objects.seeded_objects(logits[0], logits[1], area)[0])
    assert len(candidates) == len(seeds_yx) >= 3
    np.testing.assert_allclose(candidates.points_xy, seeds_yx[:, ::-1])
    for index in range(len(candidates)):
        mask = candidates.runs[0].decode_rows(index, 0, 96)
        np.testing.assert_array_equal(mask, labels == index + 1)
        assert candidates.area[index] == mask.sum()
        ys, xs = np.nonzero(mask)
        assert tuple(candidates.boxes_xyxy[index]) == (xs.min(), ys.min(), xs.max(), ys.max())
    # objects never overlap: every one is kept and painted whole
    result = candidates.select(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert len(result.objects) == len(candidates)
    assert (result.labels > 0).sum() == (labels > 0).sum()


def _snap_case():
    objects = _two_touching_discs()
    masks = np.zeros((3, 64, 64), bool)
    masks[0, 20:45, 8:60] = True  # both discs
    masks[1] = objects == 1
    masks[1, 30:34, 31:36] = True  # the first disc leaking into the second
    masks[1, 32, 9:12] = False  # and missing a bit of its rim
    masks[2, 25:35, 15:25] = True  # a part of the first
    scores = np.array([0.2, 0.9, 0.1])
    return objects, masks, scores


def test_a_click_on_an_object_makes_the_best_mask_that_object_where_they_agree():
    objects, masks, scores = _snap_case()
    click = np.array([[32.0, 20.0]])
    before = masks.copy()
    snapped = snapping.snap_to_objects(masks, scores, objects, click, np.array([1]), None)
    np.testing.assert_array_equal(snapped[1], objects == 1)
    np.testing.assert_array_equal(snapped[[0, 2]], masks[[0, 2]])  # the others stay
    np.testing.assert_array_equal(masks, before)  # the input is not changed
    # with an agreement threshold, a best mask that disagrees (IoU < 0.5) stays
    part_best = np.array([0.2, 0.1, 0.9])
    snapped = snapping.snap_to_objects(
        masks, part_best, objects, click, np.array([1]), None, agreement_iou=0.5
    )
    assert snapping._iou(masks[2], objects == 1) < 0.5
    np.testing.assert_array_equal(snapped, masks)
    # by default it snaps, cut to the mask's box (rows 25-34, cols 15-24) grown by 10 %
    assert snapping.CLICK_AGREEMENT_IOU == 0.0
    snapped = snapping.snap_to_objects(masks, part_best, objects, click, np.array([1]), None)
    rows, cols = np.mgrid[:64, :64]
    grown = (rows >= 24) & (rows <= 35) & (cols >= 14) & (cols <= 25)
    np.testing.assert_array_equal(snapped[2], (objects == 1) & grown)
    uncut = snapping.snap_to_objects(
        masks, part_best, objects, click, np.array([1]), None, box_growth=None
    )
    np.testing.assert_array_equal(uncut[2], objects == 1)


def test_a_snapped_click_cuts_off_a_neighbour_the_head_merged():
    discs = _two_touching_discs()
    merged = (discs > 0).astype(np.int32)  # the head saw one object
    masks = (discs == 1)[None].repeat(3, axis=0)  # the decoder found the first disc
    masks[0, 30:34, 31:34] = True  # leaking a little into the second
    snapped = snapping.snap_to_objects(
        masks, np.array([0.9, 0.5, 0.1]), merged, np.array([[32.0, 20.0]]), np.array([1]), None
    )
    whole = snapping._iou(merged == 1, discs == 1)
    assert whole < 0.6
    # the mask's box (cols 8-33, 26 px) grown by 2.6 px reaches x = 35.6, which pixel
    # 36 (35.5-36.5) overlaps: the merged object is kept up to col 36
    assert snapping._iou(snapped[0], discs == 1) > 0.8 > 0.6 > whole
    assert snapped[0][:, 36].any() and not snapped[0][:, 37:].any()


def _merged_discs_with_a_ridge():
    """Two touching discs the head merged into one object, its border logits high
    (3) along the line where they meet (cols 30-31) and low (-3) elsewhere."""
    discs = _two_touching_discs()
    merged = (discs > 0).astype(np.int32)
    border = np.full(discs.shape, -3.0, np.float32)
    border[:, 30:32] = 3.0
    return discs, merged, border


def test_a_snapped_click_splits_a_merged_neighbour_off_along_the_head_border():
    discs, merged, border = _merged_discs_with_a_ridge()
    mask = discs == 1
    mask[32, 9:12] = False  # the decoder missed a bit of the first disc's rim
    masks = np.stack([mask, discs > 0, discs == 2])
    scores = np.array([0.9, 0.5, 0.1])
    click = np.array([[32.0, 20.0]])
    split = snapping.snap_to_objects(
        masks, scores, merged, click, np.array([1]), None, border_logits=border
    )
    # the part past the mask's box (cols 8-30) grown by 25 % (5.75 px: up to col 36)
    # is the neighbour's; the watershed gives it everything up to the ridge
    np.testing.assert_array_equal(split[0], discs == 1)
    np.testing.assert_array_equal(split[1:], masks[1:])  # the others stay the decoder's
    # a straight cut to the grown box would have kept cols 31-36 of the neighbour
    cut = snapping.snap_to_objects(masks, scores, merged, click, np.array([1]), None, 0.0, 0.25)
    assert (cut[0] & (discs == 2)).sum() > 0 == (split[0] & (discs == 2)).sum()


def test_split_off_keeps_an_object_that_does_not_reach_past_the_grown_box():
    discs, merged, border = _merged_discs_with_a_ridge()
    first = discs == 1
    # a mask as large as the merged object: nothing lies past its box
    np.testing.assert_array_equal(
        snapping.split_off(merged > 0, merged > 0, border, 0.0), merged > 0
    )
    # a mask that misses the object leaves it whole
    elsewhere = np.zeros_like(first)
    elsewhere[0:3, 0:3] = True
    np.testing.assert_array_equal(snapping.split_off(first, elsewhere, border, 0.25), first)
    # a mask on the left two thirds of the first disc (cols 8-24, its box grown to
    # 28.25): the mask's pixels stay, nothing past the grown box does, and the flat
    # border logits between them are shared (the watershed meets half-way)
    cols = np.mgrid[:64, :64][1]
    part = snapping.split_off(merged > 0, first & (cols <= 24), border, 0.25)
    assert np.all(part[first & (cols <= 24)]) and not part[:, 29:].any()
    assert part[first & (cols == 26)].all() and not part[first & (cols == 28)].any()


def _disc_logits(size: int = 64, centre=(32, 30), radius: float = 12.0):
    """Foreground logits falling off across a disc's rim (0 at ``radius``, 1 per px
    inside), border logits low everywhere."""
    rows, cols = np.mgrid[:size, :size]
    distance = np.hypot(rows - centre[0], cols - centre[1])
    foreground = (radius - distance).astype(np.float32)
    return foreground, np.full((size, size), -3.0, np.float32)


def _snap_box(masks, objects, box, foreground, border):
    """``snap_to_objects`` of box candidates with the head's logits."""
    scores = np.linspace(0.9, 0.1, len(masks))
    return snapping.snap_to_objects(
        masks, scores, objects, None, None, box, border_logits=border, foreground_logits=foreground
    )


def test_a_box_grows_its_object_to_the_rim_that_fills_the_box():
    foreground, border = _disc_logits()
    objects = (foreground > 2.5).astype(np.int32)  # the head's object: 2.5 px too small
    box = np.array([20.0, 18.0, 44.0, 42.0])  # the disc of radius 12 fills rows/cols 20-44
    fitted = snapping.fit_to_box(objects, 1, box, foreground, border)
    rows, cols = np.nonzero(fitted)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 44, 18, 42)
    # the levels -2 to 0 fill the box; at 65 % of them (-0.75) the answer holds the
    # whole disc of radius 12 and stays within radius 13
    true_disc = foreground > 0
    assert np.all(fitted[true_disc]) and not np.any(fitted[foreground <= -1.0])
    assert snapping._iou(fitted, true_disc) > snapping._iou(objects == 1, true_disc)
    # through snap_to_objects: with the logits the box's mask is fitted, without them
    # it is the object cut to the box
    masks = (objects == 1)[None]
    np.testing.assert_array_equal(_snap_box(masks, objects, box, foreground, border)[0], fitted)
    plain = snapping.snap_to_objects(masks, np.array([0.9]), objects, None, None, box)
    np.testing.assert_array_equal(plain[0], objects == 1)


def test_a_box_joins_the_objects_lying_mostly_inside_it():
    foreground, border = _disc_logits()
    objects = np.zeros((64, 64), np.int32)
    inner = foreground > 0.5
    cols = np.mgrid[:64, :64][1]
    objects[inner & (cols < 30)] = 1  # the head cut the nucleus in two
    objects[inner & (cols >= 30)] = 2
    objects[28:36, 44:60] = 3  # a neighbour, only its first 2 columns in the box
    box = np.array([20.0, 18.0, 44.0, 45.0])
    fitted = snapping.fit_to_box(objects, 1, box, foreground, border)
    assert np.all(fitted[objects == 2])  # the other half joined
    assert not np.any(fitted[objects == 3])  # the neighbour did not
    # with a share no object reaches, only the designated object's part remains
    alone = snapping.fit_to_box(objects, 1, box, foreground, border, inside_share=1.01)
    assert not np.any(alone[objects == 2]) and np.all(alone[objects == 1])


def test_each_box_candidate_is_fitted_to_the_object_it_falls_on():
    first, border = _disc_logits()
    second, _ = _disc_logits(centre=(46, 46), radius=6.0)
    foreground = np.maximum(first, second)
    objects = (first > 2.5).astype(np.int32)
    objects[second > 2.5] = 2  # a small nucleus, mostly below and right of the box
    box = np.array([2.0, 2.0, 45.0, 45.0])
    masks = np.zeros((3, 64, 64), bool)
    masks[0] = objects == 1
    masks[1, 30:34, 28:32] = True  # a part of the disc: the same object
    masks[2, 44:46, 44:46] = True  # on the small nucleus
    snapped = _snap_box(masks, objects, box, foreground, border)
    on_disc = snapping.fit_to_box(objects, 1, box, foreground, border)
    on_small = snapping.fit_to_box(objects, 2, box, foreground, border)
    np.testing.assert_array_equal(snapped[0], on_disc)
    np.testing.assert_array_equal(snapped[1], on_disc)
    np.testing.assert_array_equal(snapped[2], on_small)
    # the disc (wholly in the box) joins the small nucleus's answer, not the reverse
    assert np.any(on_small & (objects == 2)) and not np.any(on_disc & (objects == 2))


def test_a_box_off_the_plane_fits_nothing():
    foreground, border = _disc_logits()
    objects = (foreground > 0.5).astype(np.int32)
    box = np.array([70.0, 70.0, 90.0, 90.0])
    assert not snapping.fit_to_box(objects, 1, box, foreground, border).any()


def test_clicks_that_do_not_designate_one_object_change_nothing():
    objects, masks, scores = _snap_case()
    cases = [
        (np.array([[32.0, 20.0], [32.0, 42.0]]), np.array([1, 1])),  # two objects
        (np.array([[32.0, 20.0], [30.0, 18.0]]), np.array([1, 0])),  # a negative on it
        (np.array([[2.0, 2.0]]), np.array([1])),  # background
        (np.array([[32.0, 20.0]]), np.array([0])),  # only a negative click
    ]
    for points, labels in cases:
        snapped = snapping.snap_to_objects(masks, scores, objects, points, labels, None)
        np.testing.assert_array_equal(snapped, masks)


def test_a_box_mask_becomes_its_main_object_cut_to_the_box():
    objects, masks, scores = _snap_case()
    box = np.array([[18.0, 5.0, 46.0, 36.0]])  # the first disc and a bit of the second
    box_masks = np.zeros((1, 1, 64, 64), bool)
    box_masks[0, 0, 22:40, 10:36] = True  # mostly the first disc, some of the second
    snapped = snapping.snap_to_objects(box_masks, scores[None, :1], objects, None, None, box)
    np.testing.assert_array_equal(snapped[0, 0], objects == 1)
    # an object that reaches past the box is cut to it
    second = np.zeros((1, 64, 64), bool)
    second[0, 30:34, 33:40] = True
    snapped = snapping.snap_to_objects(second, scores[:1], objects, None, None, box[0])
    expected = (objects == 2) & (np.arange(64) <= 36)[None, :] & (np.arange(64) >= 18)[:, None]
    expected &= (np.arange(64) <= 46)[:, None]
    np.testing.assert_array_equal(snapped[0], expected)
    # a mask on background only, or a box with clicks, stays as it is
    empty = np.zeros((1, 64, 64), bool)
    empty[0, 0:3, 0:3] = True
    np.testing.assert_array_equal(
        snapping.snap_to_objects(empty, scores[:1], objects, None, None, box[0]), empty
    )
    click = np.array([[32.0, 20.0]])
    np.testing.assert_array_equal(
        snapping.snap_to_objects(second, scores[:1], objects, click, np.array([1]), box[0]), second
    )


def test_tiles_own_every_pixel_once_and_reach_a_margin_past_it():
    for size, zoom in ((100, 2), (97, 3), (512, 4), (7, 4), (3, 4), (1, 2)):
        spans = objects.tile_spans(size, zoom)
        assert len(spans) == min(zoom, size)  # a thin plane gets no empty tile
        owned = np.zeros(size, int)
        margin = round(objects.ZOOM_MARGIN * size)
        for own_start, own_stop, start, stop in spans:
            owned[own_start:own_stop] += 1
            assert start == max(0, own_start - margin) and stop == min(size, own_stop + margin)
        np.testing.assert_array_equal(owned, 1)


def test_the_zoom_grows_as_the_objects_shrink():
    radii = np.linspace(0.5, 30.0, 60)
    zooms = [objects.zoom_for(r) for r in radii]
    assert all(a >= b for a, b in zip(zooms, zooms[1:]))
    assert zooms[0] == objects.MAX_ZOOM and zooms[-1] == 1
    assert objects.zoom_for(0.0) == 1  # no foreground: nothing to zoom in on


def test_typical_radius_of_a_disc_is_its_depth_percentile_in_the_model_frame():
    rows, cols = np.mgrid[:201, :201]
    disc = (rows - 100) ** 2 + (cols - 100) ** 2 <= 80**2
    logits = np.where(disc, 3.0, -3.0)
    # the share of a disc's pixels deeper than d is ((R - d) / R) ** 2
    depth = 80 * (1 - np.sqrt(1 - objects.ZOOM_PERCENTILE / 100))
    assert objects.typical_radius(logits, 1.0) == pytest.approx(depth, rel=0.03)
    assert objects.typical_radius(logits, 0.25) == pytest.approx(depth / 4, rel=0.03)
    median = 80 * (1 - np.sqrt(0.5))
    assert objects.typical_radius(logits, 1.0, percentile=50) == pytest.approx(median, rel=0.03)
    assert objects.typical_radius(np.full((9, 9), -1.0), 1.0) == 0.0


def test_zoomed_logits_are_each_tiles_own_logits_stitched():
    predictor = Predictor(_headed_model(), device="cpu")
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, (90, 130, 3), dtype=np.uint8)
    logits = objects.tiled_head_logits(predictor.model, rgb, 2, predictor.embed)
    assert logits.shape == (2, 90, 130)
    for own_y0, own_y1, y0, y1 in objects.tile_spans(90, 2):
        for own_x0, own_x1, x0, x1 in objects.tile_spans(130, 2):
            tile = predictor.embed(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
            expected = objects.head_logits(predictor.model, tile)
            np.testing.assert_array_equal(
                logits[:, own_y0:own_y1, own_x0:own_x1],
                expected[:, own_y0 - y0 : own_y1 - y0, own_x0 - x0 : own_x1 - x0],
            )


def test_find_objects_zooms_as_asked_or_as_the_foreground_says():
    predictor = Predictor(_headed_model(), device="cpu")
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    embedding = predictor.embed(rgb)
    model, embed = predictor.model, predictor.embed
    whole = objects.head_logits(model, embedding)
    found = objects.find_objects(model, embedding, rgb, embed, zoom=1, views=1)
    np.testing.assert_array_equal(found.labels, objects.plane_objects(whole, embedding)[0])
    np.testing.assert_array_equal(found.foreground_logits, whole[0])
    tiled = objects.tiled_head_logits(model, rgb, 3, embed)
    found = objects.find_objects(model, embedding, rgb, embed, zoom=3, views=1)
    assert found.zoom == 3
    # seeds of MIN_SEED_AREA pixels of the tiles' (3x finer) model frame
    area = max(1, round(objects.MIN_SEED_AREA * (128 / 512) ** 2 / 9))
    np.testing.assert_array_equal(found.labels, objects.seeded_objects(*tiled, area)[0])
    automatic = objects.find_objects(model, embedding, rgb, embed, views=1)
    assert automatic.zoom == objects.auto_zoom(whole[0], embedding)
    logits, zoom = objects.plane_logits(model, embedding, rgb, embed, views=1)
    assert zoom == automatic.zoom
    np.testing.assert_array_equal(logits[0], automatic.foreground_logits)
    # without the image (only an embedding) there is nothing to zoom in on
    assert objects.find_objects(model, embedding, None, embed).zoom == 1


def test_two_views_average_the_plane_and_the_plane_turned_half_a_turn():
    predictor = Predictor(_headed_model(), device="cpu")
    rgb = np.random.default_rng(4).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    turned = np.ascontiguousarray(rgb[::-1, ::-1])
    embedding = predictor.embed(rgb)
    model, embed = predictor.model, predictor.embed
    for zoom in (1, 3):
        one, _ = objects.plane_logits(model, embedding, rgb, embed, zoom, views=1)
        other, _ = objects.plane_logits(model, embed(turned), turned, embed, zoom, views=1)
        assert not np.allclose(one, other[:, ::-1, ::-1], atol=1e-3)  # two real views
        both, used = objects.plane_logits(model, embedding, rgb, embed, zoom)  # HEAD_VIEWS
        assert used == zoom
        np.testing.assert_allclose(both, (one + other[:, ::-1, ::-1]) / 2, atol=1e-5)
        found = objects.find_objects(model, embedding, rgb, embed, zoom)
        np.testing.assert_array_equal(found.foreground_logits, both[0])
        area = max(1, round(objects.MIN_SEED_AREA * (128 / 512) ** 2 / zoom**2))
        np.testing.assert_array_equal(found.labels, objects.seeded_objects(*both, area)[0])
    # without the plane only its embedding's view exists
    alone, _ = objects.plane_logits(model, embedding, None, embed)
    np.testing.assert_array_equal(alone, objects.head_logits(model, embedding))


def test_bad_zooms_and_mismatched_images_are_refused():
    predictor = Predictor(_headed_model(), device="cpu")
    rgb = np.zeros((64, 64, 3), np.uint8)
    embedding = predictor.embed(rgb)
    for zoom in (-1, objects.MAX_ZOOM + 1, 1.5, True, "2"):
        with pytest.raises(InputError, match="head_zoom must be an integer"):
            objects.find_objects(predictor.model, embedding, rgb, predictor.embed, zoom)
        with pytest.raises(InputError, match="head_zoom must be an integer"):
            ForegroundParams(head_zoom=zoom)
    for views in (0, 3, 1.5, True, "2"):
        with pytest.raises(InputError, match="head_views must be 1"):
            objects.find_objects(predictor.model, embedding, rgb, predictor.embed, views=views)
        with pytest.raises(InputError, match="head_views must be 1"):
            ForegroundParams(head_views=views)
    with pytest.raises(InputError, match="embedding is for a"):
        objects.find_objects(predictor.model, embedding, rgb[:32], predictor.embed)


def test_thin_planes_can_be_zoomed():
    predictor = Predictor(_headed_model(), device="cpu")
    rgb = np.random.default_rng(5).integers(0, 255, (3, 300, 3), dtype=np.uint8)
    embedding = predictor.embed(rgb)
    found = objects.find_objects(predictor.model, embedding, rgb, predictor.embed, zoom=4)
    assert found.zoom == 4 and found.labels.shape == (3, 300)
    candidates = _propose(predictor, rgb, head_zoom=4)
    assert candidates.image_hw == (3, 300)
