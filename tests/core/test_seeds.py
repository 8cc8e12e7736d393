"""Everything mode from a foreground head: seeded watershed, runs, scores, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany.core import seeds
from napari_segany.core.automatic import GridParams, decode_grid
from napari_segany.core.errors import CheckpointError, InputError
from napari_segany.core.loading import load_model
from napari_segany.core.mask_ops import MaskRuns
from napari_segany.core.model.build import build_sam
from napari_segany.core.model.foreground_head import ForegroundHead
from napari_segany.core.predictor import Predictor
from napari_segany.core.progress import drain


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
    labels, seeds_yx = seeds.seeded_objects(*_logits_of(truth), min_seed_area=4)
    assert labels.max() == 2 and len(seeds_yx) == 2
    for found in (1, 2):
        (row, col) = np.floor(seeds_yx[found - 1]).astype(int)
        matching = truth[row, col]
        assert matching > 0
        np.testing.assert_array_equal(labels == found, truth == matching)


def test_seeds_sit_at_the_most_interior_pixel():
    truth = _two_touching_discs()
    _, seeds_yx = seeds.seeded_objects(*_logits_of(truth), min_seed_area=4)
    # the first disc's interior is widest on its centre row, about its centre column
    first = seeds_yx[np.argmin(seeds_yx[:, 1])]
    assert abs(first[0] - 32.5) <= 1.0 and abs(first[1] - 20.5) <= 2.0


def test_seeds_smaller_than_the_minimum_area_give_no_object():
    truth = np.zeros((32, 32), np.int32)
    truth[4:14, 4:14] = 1  # interior 8 x 8 = 64 px
    truth[20:24, 20:24] = 2  # interior 2 x 2 = 4 px
    labels, seeds_yx = seeds.seeded_objects(*_logits_of(truth), min_seed_area=5)
    assert labels.max() == 1 and len(seeds_yx) == 1
    np.testing.assert_array_equal(labels == 1, truth == 1)
    labels, _ = seeds.seeded_objects(*_logits_of(truth), min_seed_area=4)
    assert labels.max() == 2


def test_nothing_found_on_background():
    empty = np.full((16, 16), -3.0)
    labels, seeds_yx = seeds.seeded_objects(empty, empty, min_seed_area=1)
    assert labels.max() == 0 and seeds_yx.shape == (0, 2)


def test_logits_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        seeds.seeded_objects(np.zeros((4, 4)), np.zeros((4, 5)), min_seed_area=1)


def test_label_runs_decode_to_every_object():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (23, 17)).astype(np.int32)
    labels[labels == 3] = 0  # an object without pixels: no runs
    edges, offsets = seeds.label_runs(labels, 4)
    runs = MaskRuns(edges, offsets, labels.shape)
    assert len(runs) == 4
    for index in range(4):
        np.testing.assert_array_equal(runs.decode_rows(index, 0, 23), labels == index + 1)
        np.testing.assert_array_equal(runs.decode_rows(index, 5, 9), (labels == index + 1)[5:9])


def test_object_scores_are_mean_probability_and_confident_share():
    labels = np.array([[1, 1, 2, 0]], np.int32)
    logits = np.array([[0.0, 2.0, -1.0, 5.0]])
    probability, confident = seeds.object_scores(logits, labels, 2, offset=1.0)
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


def test_foreground_proposals_need_a_head_and_the_whole_plane():
    predictor = Predictor(build_sam("conv_s"), device="cpu")
    rgb = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InputError, match="no foreground head"):
        drain(decode_grid(predictor, rgb, GridParams(proposals="foreground")))
    with pytest.raises(InputError, match="crop_n_layers=0"):
        GridParams(proposals="foreground", crop_n_layers=1)
    with pytest.raises(InputError, match="proposals must be one of"):
        GridParams(proposals="seeds")


def test_foreground_candidates_are_the_watershed_objects_of_the_head():
    model = _headed_model(hidden=0)
    with torch.no_grad():  # random weights, enlarged: blobs of foreground, little border
        model.foreground_head.project.weight.mul_(50.0)
        model.foreground_head.project.bias[64:] = -3.0  # the border channel's pixels
    predictor = Predictor(model, device="cpu")
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)
    embedding = predictor.embed(rgb)
    candidates = drain(decode_grid(predictor, rgb, GridParams(proposals="foreground")))
    logits = seeds.head_logits(predictor.model, embedding)
    assert logits.shape == (2, 96, 160)
    labels, seeds_yx = seeds.plane_objects(logits, embedding)
    # the minimum seed area is in model-frame pixels: 160 px are 512 there
    area = round(seeds.MIN_SEED_AREA * (160 / 512) ** 2)
    np.testing.assert_array_equal(labels, seeds.seeded_objects(logits[0], logits[1], area)[0])
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
    snapped = seeds.snap_to_objects(masks, scores, objects, click, np.array([1]), None)
    np.testing.assert_array_equal(snapped[1], objects == 1)
    np.testing.assert_array_equal(snapped[[0, 2]], masks[[0, 2]])  # the others stay
    np.testing.assert_array_equal(masks, before)  # the input is not changed
    # a best mask that disagrees with the object (IoU < 0.5) is left as it is
    part_best = np.array([0.2, 0.1, 0.9])
    snapped = seeds.snap_to_objects(masks, part_best, objects, click, np.array([1]), None)
    assert seeds._iou(masks[2], objects == 1) < seeds.CLICK_AGREEMENT_IOU
    np.testing.assert_array_equal(snapped, masks)


def test_clicks_that_do_not_designate_one_object_change_nothing():
    objects, masks, scores = _snap_case()
    cases = [
        (np.array([[32.0, 20.0], [32.0, 42.0]]), np.array([1, 1])),  # two objects
        (np.array([[32.0, 20.0], [30.0, 18.0]]), np.array([1, 0])),  # a negative on it
        (np.array([[2.0, 2.0]]), np.array([1])),  # background
        (np.array([[32.0, 20.0]]), np.array([0])),  # only a negative click
    ]
    for points, labels in cases:
        snapped = seeds.snap_to_objects(masks, scores, objects, points, labels, None)
        np.testing.assert_array_equal(snapped, masks)


def test_a_box_mask_becomes_its_main_object_cut_to_the_box():
    objects, masks, scores = _snap_case()
    box = np.array([[18.0, 5.0, 46.0, 36.0]])  # the first disc and a bit of the second
    box_masks = np.zeros((1, 1, 64, 64), bool)
    box_masks[0, 0, 22:40, 10:36] = True  # mostly the first disc, some of the second
    snapped = seeds.snap_to_objects(box_masks, scores[None, :1], objects, None, None, box)
    np.testing.assert_array_equal(snapped[0, 0], objects == 1)
    # an object that reaches past the box is cut to it
    second = np.zeros((1, 64, 64), bool)
    second[0, 30:34, 33:40] = True
    snapped = seeds.snap_to_objects(second, scores[:1], objects, None, None, box[0])
    expected = (objects == 2) & (np.arange(64) <= 36)[None, :] & (np.arange(64) >= 18)[:, None]
    expected &= (np.arange(64) <= 46)[:, None]
    np.testing.assert_array_equal(snapped[0], expected)
    # a mask on background only, or a box with clicks, stays as it is
    empty = np.zeros((1, 64, 64), bool)
    empty[0, 0:3, 0:3] = True
    np.testing.assert_array_equal(
        seeds.snap_to_objects(empty, scores[:1], objects, None, None, box[0]), empty
    )
    click = np.array([[32.0, 20.0]])
    np.testing.assert_array_equal(
        seeds.snap_to_objects(second, scores[:1], objects, click, np.array([1]), box[0]), second
    )
