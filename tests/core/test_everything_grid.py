"""Everything mode: building blocks against upstream's, the two phases, stacks."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch

from napari_segany.core.embeddings import Embedding
from napari_segany.core.errors import InputError
from napari_segany.core.everything.grid import (
    GridParams,
    crop_boxes_xyxy,
    decode_grid,
    everything_params,
    segment_everything,
    unit_grid_xy,
)
from napari_segany.core.everything.grid_decoder import GridDecoder
from napari_segany.core.everything.selection import EmptyResultWarning
from napari_segany.core.everything.stack import segment_everything_stack
from napari_segany.core.image import to_model_rgb
from napari_segany.core.mask_ops import (
    box_nms,
    masks_to_boxes,
    masks_to_boxes_torch,
    remove_small_regions,
)
from napari_segany.core.mask_runs import MaskRuns, encode_runs, encode_runs_torch
from napari_segany.core.model.build import build_sam
from napari_segany.core.predictor import (
    Predictor,
    iter_upscaled_logits,
    upscale_logits,
    upscale_masks,
)
from napari_segany.core.progress import drain

upstream = pytest.importorskip("tests.oracle.upstream")
amg = pytest.importorskip("segment_anything.utils.amg")
from tests.oracle import standins  # noqa: E402


def test_box_nms_equals_reference_with_ties_and_empty_boxes():
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 60, (300, 2))
    boxes = torch.as_tensor(np.concatenate([corners, corners + rng.integers(0, 25, (300, 2))], 1))
    boxes[::17, 2:] = boxes[::17, :2]  # zero-area boxes
    scores = torch.as_tensor(rng.integers(0, 5, 300), dtype=torch.float32)  # many ties
    for threshold in (0.0, 0.3, 0.7, 1.0):
        expected = standins.nms(boxes.float(), scores, threshold)
        assert box_nms(boxes, scores, threshold).tolist() == expected.tolist()


def test_masks_to_boxes_equals_upstream():
    masks = torch.zeros((4, 30, 40), dtype=torch.bool)
    masks[0, 3:9, 5:6] = True
    masks[1, 0, 0] = True
    masks[2, 10:30, 20:40] = True  # masks[3] stays empty
    assert masks_to_boxes(masks).tolist() == amg.batched_mask_to_box(masks).tolist()
    assert masks_to_boxes(masks.numpy()).tolist() == amg.batched_mask_to_box(masks).tolist()


def test_device_side_boxes_and_runs_equal_the_numpy_ones():
    """The versions that run where the masks are (CUDA in everything mode) give the
    numpy versions' results, edge cases included: empty and full masks, runs touching
    the first and last pixel, masks over the edge limit."""
    rng = np.random.default_rng(6)
    masks = torch.as_tensor(rng.normal(0, 3, (9, 23, 31)) > 2.0)  # speckle
    masks[0] = False
    masks[1] = True
    masks[2] = False
    masks[2, 0, :5] = True  # starts at pixel 0
    masks[2, -1, -3:] = True  # ends at the last pixel
    masks[3] = False
    masks[3, 4:9, 6:20] = True
    masks[4, 0, 0], masks[4, -1, -1] = True, True
    assert masks_to_boxes_torch(masks).tolist() == masks_to_boxes(masks.numpy()).tolist()
    for limit in (None, 40, 0):
        ours = encode_runs_torch(masks, limit)
        expected = encode_runs(masks.numpy(), limit)
        for got, want in zip(ours, expected):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    assert encode_runs(masks.numpy(), 40)[2].any() and not encode_runs(masks.numpy(), 40)[2].all()


@pytest.mark.parametrize("shape", [(512, 512), (300, 701), (1000, 37)])
def test_crop_boxes_and_grid_equal_upstream(shape):
    for layers in (0, 1, 2):
        boxes, layer_ids = amg.generate_crop_boxes(shape, layers, 512 / 1500)
        ours = crop_boxes_xyxy(shape, layers, 512 / 1500)
        assert [list(b) for b, _ in ours] == boxes and [k for _, k in ours] == layer_ids
    np.testing.assert_allclose(unit_grid_xy(7), amg.build_point_grid(7), atol=1e-12)


def test_runs_round_trip_and_upscaling_routes_agree():
    rng = np.random.default_rng(1)
    low = torch.as_tensor(rng.normal(0, 3, (5, 64, 64)), dtype=torch.float32)
    direct = upscale_logits(low, (256, 200), (128, 100), 256)  # model frame = 2 x plane
    model_frame = torch.nn.functional.interpolate(low[None], (256, 256), mode="bilinear")
    two_step = torch.nn.functional.interpolate(
        model_frame[..., :256, :200], (128, 100), mode="bilinear"
    )[0]
    torch.testing.assert_close(direct, two_step, atol=1e-5, rtol=1e-5)
    masks = direct > 0
    edges, counts, too_many = encode_runs(masks)
    assert not too_many.any()
    runs = MaskRuns(edges, np.concatenate([[0], np.cumsum(counts)]), (128, 100))
    for index in range(5):
        np.testing.assert_array_equal(runs.decode_rows(index, 30, 90), masks[index, 30:90].numpy())


def test_chunked_upscaling_equals_one_call_and_predictor_masks():
    rng = np.random.default_rng(4)
    low = torch.as_tensor(rng.normal(0, 3, (7, 64, 64)), dtype=torch.float32)
    whole = upscale_logits(low, (256, 171), (90, 60), 256)
    chunks = list(iter_upscaled_logits(low, (256, 171), (90, 60), 256, max_values=3 * 256 * 171))
    assert [start for start, _ in chunks] == [0, 3, 6]
    # equal up to float rounding: torch may vectorise a 3-plane and a 7-plane call apart
    torch.testing.assert_close(torch.cat([c for _, c in chunks]), whole, rtol=0, atol=1e-5)
    masks = upscale_masks(low.reshape(7, 1, 64, 64), (256, 171), (90, 60), 256)
    np.testing.assert_array_equal(masks[:, 0], (whole > 0).numpy())


def test_speckled_masks_keep_logits_and_decode_the_same():
    from napari_segany.core.everything.grid import mask_statistics

    rng = np.random.default_rng(5)
    low = torch.as_tensor(rng.normal(0, 3, (3, 64, 64)), dtype=torch.float32)  # speckle
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    low[1] = 10.0 - ((yy - 20) ** 2 + (xx - 30) ** 2).sqrt()  # a smooth disc
    stats = mask_statistics(low, (256, 256), (256, 256), 256, 1.0)
    assert set(stats["dense"]) == {0, 2} and stats["counts"][[0, 2]].tolist() == [0, 0]
    offsets = np.concatenate([[0], np.cumsum(stats["counts"])])
    to_frame = lambda x: upscale_logits(x, (256, 256), (256, 256), 256)  # noqa: E731
    runs = MaskRuns(stats["edges"], offsets, (256, 256), stats["dense"], to_frame)
    expected = to_frame(low) > 0
    for index in range(3):
        np.testing.assert_array_equal(runs.decode_rows(index, 40, 200), expected[index, 40:200])
    assert runs.nbytes < 3 * 64 * 64 * 4 + stats["edges"].nbytes + 100
    assert stats["area"].tolist() == expected.sum((1, 2)).tolist()


def test_small_region_removal_in_a_window_equals_the_whole_image():
    rng = np.random.default_rng(2)
    image = np.zeros((60, 80), bool)
    image[10:50, 20:70] = rng.random((40, 50)) < 0.8  # holes and islands of all sizes
    image[30, 75] = True  # an island far from the rest
    full_holes, changed = amg.remove_small_regions(image, 6, "holes")
    y0, y1, x0, x1 = 9, 51, 19, 77  # bbox grown by one pixel
    outside = (y0 * 80, (60 - y1) * 80, (y1 - y0) * x0, (y1 - y0) * (80 - x1))
    ours, ours_changed = remove_small_regions(image[y0:y1, x0:x1], 6, "holes", outside)
    assert ours_changed == changed
    np.testing.assert_array_equal(ours, full_holes[y0:y1, x0:x1])
    full_islands, _ = amg.remove_small_regions(full_holes, 6, "islands")
    ours_islands, _ = remove_small_regions(ours, 6, "islands")
    np.testing.assert_array_equal(ours_islands, full_islands[y0:y1, x0:x1])
    # a mask covering almost the whole image: its "hole" reaches outside the window
    almost = np.zeros((20, 20), bool)
    almost[2:] = True  # window: rows 1..19; outside: row 0 (20 px); "hole": rows 0-1 (40 px)
    kept, changed = remove_small_regions(almost[1:], 30, "holes", (20, 0, 0, 0))
    assert not changed and np.array_equal(kept, almost[1:])
    assert remove_small_regions(almost[1:], 50, "holes", (20, 0, 0, 0))[0] is None


def test_parameters_are_validated():
    grid, filters = everything_params(points_per_side=8, pred_iou_thresh=0.5)
    assert grid.points_per_side == 8 and filters.pred_iou_thresh == 0.5
    for bad in (
        {"points_per_sid": 8},
        {"points_per_side": 0},
        {"box_nms_thresh": 1.5},
        {"crop_overlap_ratio": 1.0},
        {"min_mask_region_area": -1},
        {"clicked_component_only": "yes"},
    ):
        with pytest.raises(InputError):
            everything_params(**bad)


@pytest.fixture(scope="module")
def predictor():
    sam = build_sam("vit_t")
    upstream.randomize_(sam, seed=1, scale=0.15)
    return Predictor(sam, "cpu", "fp32")


def _blobs(shape, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, 30.0)
    for _ in range(8):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(6, 20)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(80, 250)
    return np.clip(np.stack([image, 0.7 * image, 255 - image], -1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def candidates(predictor):
    return drain(decode_grid(predictor, _blobs((96, 120)), GridParams(points_per_side=5)))


def test_thresholds_rerun_cheaply_without_the_model(candidates, predictor, monkeypatch):
    assert len(candidates) == 75 and candidates.nbytes < 2_000_000
    monkeypatch.setattr(predictor.model, "decode", None)  # any model call would fail
    start = time.perf_counter()
    loose = candidates.select(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    strict = candidates.select(pred_iou_thresh=0.0, stability_score_thresh=0.9)
    assert time.perf_counter() - start < 2.0
    assert len(loose.objects) == 75 > len(strict.objects) > 0
    for result in (loose, strict):
        labels = result.labels
        assert labels.shape == (96, 120) and labels.dtype == np.uint32
        assert sorted(o.label for o in result.objects) == list(range(1, len(result.objects) + 1))
        areas = [o.area for o in result.objects]
        assert areas == sorted(areas, reverse=True)
        for o in result.objects:
            assert o.visible_area == int((labels == o.label).sum()) <= o.area
            y0, x0, y1, x1 = o.bbox_yxyx
            assert np.all(labels[:y0] != o.label) and np.all(labels[y1:] != o.label)
            assert np.all(labels[:, :x0] != o.label) and np.all(labels[:, x1:] != o.label)


def test_empty_result_warns_with_scores_and_advice(candidates):
    with pytest.warns(EmptyResultWarning, match="Lower pred_iou_thresh.*stability_score_thresh"):
        result = candidates.select(pred_iou_thresh=1e6, stability_score_thresh=0.99)
    assert result.objects == [] and not result.labels.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        candidates.select(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    # a threshold that is off (0) is never advised, not even "lowered" upwards
    with pytest.warns(EmptyResultWarning) as caught:
        candidates.select(pred_iou_thresh=1e6, stability_score_thresh=0.0)
    advice = str(caught[0].message).split("passed stability_score_thresh=0.0.")[1]
    assert "pred_iou_thresh" in advice and "stability_score_thresh" not in advice


def test_stack_ids_are_unique_linked_and_cancellable(predictor):
    plane = _blobs((64, 80), seed=3)
    stack = np.stack([plane, plane, np.roll(plane, 30, axis=1)])  # Z, Y, X, C
    embedded = []
    params = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.8)
    grid, filters = everything_params(**params)

    def decode(image):
        embedded.append(1)
        return decode_grid(predictor, to_model_rgb(image), grid)

    def run(link=False):
        return segment_everything_stack(
            decode, stack, filters, spatial_axes=(1, 2), channel_axis=3, link=link
        )

    separate = drain(run())
    linked = drain(run(link=True))
    assert separate.labels.shape == (3, 64, 80) and len(embedded) == 6
    ids = [set(np.unique(p)) - {0} for p in separate.labels]
    assert ids[0] and not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    assert {o.plane for o in separate.objects} == {(0,), (1,), (2,)}
    np.testing.assert_array_equal(linked.labels[0], linked.labels[1])  # same plane, same ids
    single = segment_everything(predictor, plane[..., :3], **params)
    assert len(single.objects) == sum(o.plane == (0,) for o in separate.objects)
    embedded.clear()
    steps = run()
    next(steps)
    steps.close()  # cancelling: nothing more is computed
    assert len(embedded) <= 1


def test_speckled_masks_of_a_large_plane_are_stored_in_bounded_memory(predictor, monkeypatch):
    """Per mask at most its 256 x 256 low-res logits (256 KiB) are kept, never a plane.

    A (batch x 3 x H x W) float buffer, or even one bool plane per mask, would hold
    4 MiB / 1 MiB per mask of this 1024 x 1024 plane.
    """
    generator = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    disc = 20.0 - ((yy - 100) ** 2 + (xx - 60) ** 2).sqrt()

    def speckled_decode(features, points_xy, labels, boxes, masks, multimask):
        count = points_xy.shape[0]
        logits = torch.randn((count, 3, 256, 256), generator=generator) * 3.0
        logits[:, 1] = disc  # one compact mask per point: stored as runs
        return logits, torch.full((count, 3), 0.9)

    monkeypatch.setattr(predictor.model, "decode", speckled_decode)
    features = torch.zeros((1, 256, 64, 64))
    embedding = Embedding(features, (1024, 1024), (1024, 1024), "")
    plane = np.zeros((1024, 1024, 3), np.uint8)
    params = GridParams(points_per_side=4, points_per_batch=6)
    candidates = drain(decode_grid(predictor, plane, params, embedding))
    assert len(candidates) == 48 and len(candidates.runs[0].dense) == 32
    assert candidates.nbytes <= 32 * 256 * 256 * 4 + 16 * 20_000 + 48 * 100
    disc_mask = upscale_logits(disc[None], (1024, 1024), (1024, 1024), 1024)[0] > 0
    rows = candidates.runs[0].decode_rows(1, 0, 1024)
    np.testing.assert_array_equal(rows, disc_mask.numpy())
    assert candidates.area[1] == int(disc_mask.sum())


def test_bf16_grid_decoding_follows_fp32_and_leaves_the_model_alone(predictor):
    embedding = predictor.embed(_blobs((96, 120), seed=4))
    points_xy = unit_grid_xy(4) * np.array([120.0, 96.0])
    fp32 = GridDecoder(predictor.model, predictor.device, "fp32")
    bf16 = GridDecoder(predictor.model, predictor.device, "bf16")
    low32, iou32 = fp32.decode(embedding, points_xy)
    low16, iou16 = bf16.decode(embedding, points_xy[:7])  # two batches, one cast
    low16b, iou16b = bf16.decode(embedding, points_xy[7:])
    low16, iou16 = torch.cat([low16, low16b]), torch.cat([iou16, iou16b])
    assert low16.dtype == torch.bfloat16 and iou16.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in predictor.model.mask_decoder.parameters())
    masks32, masks16 = low32 > 0, low16.float() > 0
    inter = (masks32 & masks16).sum((2, 3)).float()
    union = (masks32 | masks16).sum((2, 3)).clamp(min=1).float()
    assert torch.quantile(inter / union, 0.1) >= 0.9  # (random weights: min 0.94)
    relative = (iou16 - iou32).abs() / iou32.abs().clamp(min=1.0)  # scores of -11..7 here
    assert relative.median() <= 0.03
