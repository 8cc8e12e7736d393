"""Oracle: everything mode against upstream ``SamAutomaticMaskGenerator``, same weights.

MobileSAM (vit_t) with random weights (seed 1, scale 0.15), fp32, a small synthetic
plane. Upstream always upscales to 1024 x 1024, so it is slow: a few dozen points.

Random weights give masks of many areas and stability scores (the per-point test) but
speckled ones whose boxes span the whole crop (10th..90th percentile of box area / crop
area = 1.0 for every seed and scale tried), so box NMS keeps one mask per crop and the
NMS / crop / small-region logic would go untested. The second test therefore swaps the
prompt encoder and mask decoder of *both* models for the same synthetic decoder (see
``_disc_decoder``): ragged discs of varied sizes, near duplicates and shared "objects"
with small holes and islands, whose edges and scores follow the (real) crop embedding.
With 8 x 8 points and one crop layer, upstream keeps over a hundred masks; NMS removes
dozens and small-region removal changes dozens, and both sides must agree on them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_segany.core.everything.grid import decode_grid, everything_params, segment_everything
from napari_segany.core.predictor import Predictor
from napari_segany.core.progress import drain

upstream = pytest.importorskip("tests.oracle.upstream")
pytestmark = pytest.mark.slow

NO_FILTERS = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


@pytest.fixture(scope="module")
def models():
    reference, ours = upstream.matched_pair("vit_t", seed=1, scale=0.15)
    return reference, Predictor(ours, "cpu", "fp32")


def _plane(shape=(256, 200), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, 30.0)
    for _ in range(10):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(10, 40)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(80, 250)
    rgb = np.stack([image, 0.7 * image, 255 - image], -1) + rng.normal(0, 5, (*shape, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _upstream(reference, rgb, **params):
    generator = upstream.mobile_sam.SamAutomaticMaskGenerator(reference, **params)
    with torch.inference_mode():
        return generator.generate(rgb)


def test_every_grid_point_agrees_without_filters(models):
    reference, predictor = models
    rgb = _plane()
    expected = _upstream(reference, rgb, points_per_side=6, **NO_FILTERS)
    ours = segment_everything(predictor, rgb, points_per_side=6, **NO_FILTERS)
    by_point = defaultdict(list)
    for record in expected:
        by_point[tuple(np.round(record["point_coords"][0][::-1], 4))].append(record)
    mine = defaultdict(list)
    for obj in ours.objects:
        mine[tuple(np.round(obj.point_yx, 4))].append(obj)
    assert len(by_point) == 36 and set(mine) == set(by_point)
    assert len({o.area for o in ours.objects}) > 50  # many distinct, non-trivial masks
    for point, records in by_point.items():
        records = sorted(records, key=lambda r: r["predicted_iou"])
        objects = sorted(mine[point], key=lambda o: o.predicted_iou)
        assert len(objects) == len(records) == 3
        for record, obj in zip(records, objects):
            assert obj.predicted_iou == pytest.approx(record["predicted_iou"], rel=2e-4, abs=1e-4)
            assert obj.stability_score == pytest.approx(record["stability_score"], abs=2e-3)
            assert abs(obj.area - record["area"]) <= 2 + 0.002 * record["area"]


def _best_ious(masks_a, masks_b) -> np.ndarray:
    flat_a = np.stack(masks_a).reshape(len(masks_a), -1).astype(np.float32)
    flat_b = np.stack(masks_b).reshape(len(masks_b), -1).astype(np.float32)
    inter = flat_a @ flat_b.T
    union = flat_a.sum(1)[:, None] + flat_b.sum(1)[None] - inter
    return (inter / np.maximum(union, 1)).max(axis=1)


def _points_as_tokens(points=None, boxes=None, masks=None):
    """Prompt-encoder stand-in: the raw (x, y, label) of each point as its 'token'."""
    coords, labels = points
    return torch.cat([coords, labels[..., None].to(coords)], -1), torch.zeros(1)


def _disc_decoder(image_embedding, image_pe, sparse, dense, multimask):
    """Mask-decoder stand-in: per point, a small disc, a near copy, and its "object".

    In the 256 x 256 low-res frame: a disc of radius 3 to 8 (varying from point to point)
    around the point, the same disc 1.15 times larger (a near duplicate that NMS must
    remove), and a disc of radius 12 to 20 around the nearest node of a 48-pixel lattice
    (the object the point lies in: neighbouring points give the same one, as SAM does).
    Edges and scores follow the (real) crop embedding. Same arguments and outputs as
    both decoders (upstream passes them by keyword).
    """
    point_xy = sparse[:, 0, :2] / 4.0  # model frame -> 256 x 256 low-res frame
    texture = torch.nn.functional.interpolate(
        image_embedding[:1, :1], (256, 256), mode="bilinear", align_corners=False
    )[0, 0]
    texture = (texture - texture.mean()) / texture.std()
    node_xy = torch.round(point_xy / 48.0) * 48.0
    centres_xy = torch.stack([point_xy, point_xy, node_xy], dim=1)  # (N, 3, 2)
    small = 5.5 + 2.5 * torch.sin(0.37 * point_xy[:, 0] + 0.61 * point_xy[:, 1])
    large = 16.0 + 4.0 * torch.cos(0.05 * node_xy[:, 0] + 0.09 * node_xy[:, 1])
    radii = torch.stack([small, 1.15 * small, large], dim=1)[..., None, None]
    grid = torch.arange(256, dtype=torch.float32) + 0.5
    dist_y = (grid[None, None, :, None] - centres_xy[..., 1, None, None]) ** 2
    dist = (dist_y + (grid[None, None, None, :] - centres_xy[..., 0, None, None]) ** 2).sqrt()
    logits = 4.0 * (radii - dist + 2.0 * texture)
    hole_xy = node_xy + torch.tensor([4.0, 3.0])
    island_xy = node_xy + torch.stack([large + 5.0, torch.zeros_like(large)], dim=1)
    spots = [
        (
            (grid[None, :, None] - xy[:, 1, None, None]) ** 2
            + (grid[None, None, :] - xy[:, 0, None, None]) ** 2
        ).sqrt()
        for xy in (hole_xy, island_xy)
    ]
    logits[:, 2] = torch.minimum(logits[:, 2], 4.0 * (spots[0] - 1.8))  # a small hole
    logits[:, 2] = torch.maximum(logits[:, 2], 4.0 * (1.8 - spots[1]))  # a small island
    rows = point_xy[:, 1].long().clamp(0, 255)
    cols = point_xy[:, 0].long().clamp(0, 255)
    iou = 0.8 + 0.15 * torch.tanh(texture[rows, cols])[:, None] + torch.tensor([0.1, 0.0, 0.05])
    return (logits, iou) if multimask else (logits[:, :1], iou[:, :1])


def _keyword_decoder(**kw):
    return _disc_decoder(
        kw["image_embeddings"],
        kw["image_pe"],
        kw["sparse_prompt_embeddings"],
        kw["dense_prompt_embeddings"],
        kw["multimask_output"],
    )


def test_kept_masks_match_with_nms_crops_and_small_region_removal(models, monkeypatch):
    reference, predictor = models
    ours_model = predictor.model
    for model, decoder in ((reference, _keyword_decoder), (ours_model, _disc_decoder)):
        monkeypatch.setattr(model.prompt_encoder, "forward", _points_as_tokens)
        monkeypatch.setattr(model.mask_decoder, "forward", decoder)
    rgb = _plane(seed=0)
    params = dict(
        points_per_side=8,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
        pred_iou_thresh=0.75,
        stability_score_thresh=0.8,
        min_mask_region_area=30,
    )  # box_nms_thresh and crop_nms_thresh: the default 0.7
    expected = [r["segmentation"] for r in _upstream(reference, rgb, **params)]
    grid, filters = everything_params(**params)
    candidates = drain(decode_grid(predictor, rgb, grid))
    result = candidates.select(filters)
    ours = [result.mask(i) for i in range(len(result.objects))]
    assert len(expected) >= 100 and abs(len(ours) - len(expected)) <= max(1, len(expected) // 20)
    assert np.mean(_best_ious(expected, ours) >= 0.9) >= 0.95
    assert np.mean(_best_ious(ours, expected) >= 0.9) >= 0.95
    assert {o.crop_box_yxyx for o in result.objects} != {(0, 0, 256, 200)}  # crops count
    assert len({o.area for o in result.objects}) >= len(ours) // 2  # masks of many sizes
    loose = candidates.select(replace(filters, box_nms_thresh=1.0, crop_nms_thresh=1.0))
    raw = candidates.select(replace(filters, min_mask_region_area=0))
    changed = _best_ious(ours, [raw.mask(i) for i in range(len(raw.objects))]) < 1.0
    assert len(loose.objects) >= len(ours) + 30  # NMS removed dozens of overlapping masks
    assert changed.sum() >= 20  # small holes and islands were removed from many masks
