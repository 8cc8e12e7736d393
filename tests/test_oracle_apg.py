"""Oracle: everything mode ``"apg"`` against micro-sam's ``AutomaticPromptGenerator``.

Both run on the same decoder maps (made here: the maps an instance decoder would give
for discs and dumbbells, plus noise) and the same SAM weights (MobileSAM, random,
seed 1) on the same plane; micro-sam's code runs from its source with stand-ins for
elf (``tests/oracle/torch_em_upstream.reference_apg``).

Random weights give speckled masks, which test the decoding and the painting of many
fragments but hardly the NMS. So most cases swap both models' prompt encoder and mask
decoder for the same synthetic ones (:func:`_object_decoder`): each prompt's mask is the
disc of the lattice node nearest to it, its radius nudged by where the prompt lies, so
that an object's several seeds give near duplicates (IoU about 0.8 to 1) and
neighbouring discs overlap (the painting decides who owns the overlap).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_segany.core.everything.apg import ApgParams, apg_decode, apg_labels
from napari_segany.core.predictor import Predictor
from napari_segany.core.progress import drain

upstream = pytest.importorskip("tests.oracle.upstream")
oracle = pytest.importorskip("tests.oracle.torch_em_upstream")
pytestmark = pytest.mark.slow

SHAPE = (256, 224)


@pytest.fixture(scope="module")
def models():
    reference, ours = upstream.matched_pair("vit_t", seed=1, scale=0.15)
    predictor = Predictor(ours, "cpu", "fp32")
    rgb = _plane()
    sam_predictor = upstream.mobile_sam.SamPredictor(reference)
    with torch.inference_mode():
        sam_predictor.set_image(rgb)
    return sam_predictor, predictor, predictor.embed(rgb)


def _plane(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.normal(120, 40, SHAPE), 3)
    rgb = np.stack([image, 0.8 * image, 255 - image], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _maps(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoder-like maps of discs and dumbbells (two seeds, one object) with noise:
    foreground, centre distance (0 at a centre, 1 at the edge) and boundary distance
    (1 at the edge, 0 inside), as micro-sam's decoder is trained to give them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    center = np.ones(SHAPE)
    boundary = np.ones(SHAPE)
    for _ in range(14):
        cy, cx = rng.uniform(0, SHAPE[0]), rng.uniform(0, SHAPE[1])
        radius = rng.uniform(6, 22)
        lobes = [(cy, cx)]
        if rng.random() < 0.3:  # a dumbbell: two seeds
            lobes.append((cy + 0.9 * radius, cx + 0.9 * radius))
        for ly, lx in lobes:
            distance = np.hypot(yy - ly, xx - lx) / radius
            center = np.minimum(center, distance)
            boundary = np.minimum(boundary, 1 - np.clip((1 - distance) * 3, 0, 1))
    foreground = (center < 1).astype(np.float64)
    noise = [rng.normal(0, 0.15, SHAPE) for _ in range(3)]
    maps = (foreground + noise[0], center + noise[1], boundary + noise[2])
    return tuple(np.clip(m, 0, 1).astype(np.float32) for m in maps)


def _prompt_tokens(points=None, boxes=None, masks=None):
    """Prompt-encoder stand-in: the point (or the box's centre) as the prompt's token."""
    if points is not None:
        coords = points[0][:, :1]
    else:
        coords = ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None]
    return coords, torch.zeros(1)


def _object_decoder(image_embedding, image_pe, sparse, dense, multimask):
    """Mask-decoder stand-in (module docstring), low-res 256 x 256 frame; three masks
    (radius x 0.7, 1, 1.3) with ``multimask``, else the middle one."""
    point_xy = sparse[:, 0, :2] / 4.0
    texture = torch.nn.functional.interpolate(
        image_embedding[:1, :1], (256, 256), mode="bilinear", align_corners=False
    )[0, 0]
    texture = (texture - texture.mean()) / texture.std()
    node_xy = torch.round(point_xy / 14.0) * 14.0
    radius = 7.0 + 2.0 * torch.cos(0.3 * node_xy[:, 0] + 0.5 * node_xy[:, 1])
    radius = radius + 0.8 * torch.sin(1.7 * point_xy[:, 0] - 1.3 * point_xy[:, 1])
    grid = torch.arange(256, dtype=torch.float32) + 0.5
    dist = (
        (grid[None, :, None] - node_xy[:, 1, None, None]) ** 2
        + (grid[None, None, :] - node_xy[:, 0, None, None]) ** 2
    ).sqrt()
    scales = torch.tensor([0.7, 1.0, 1.3])[None, :, None, None]
    logits = 4.0 * (radius[:, None, None, None] * scales - dist[:, None] + 0.7 * texture)
    rows = point_xy[:, 1].long().clamp(0, 255)
    cols = point_xy[:, 0].long().clamp(0, 255)
    iou = 0.8 + 0.15 * torch.tanh(texture[rows, cols])[:, None] + torch.tensor([0.0, 0.08, 0.04])
    return (logits, iou) if multimask else (logits[:, 1:2], iou[:, 1:2])


def _keyword_decoder(**kw):
    return _object_decoder(
        kw["image_embeddings"],
        kw["image_pe"],
        kw["sparse_prompt_embeddings"],
        kw["dense_prompt_embeddings"],
        kw["multimask_output"],
    )


@pytest.fixture
def synthetic(models, monkeypatch):
    sam_predictor, predictor, embedding = models
    for model, decoder in (
        (sam_predictor.model, _keyword_decoder),
        (predictor.model, _object_decoder),
    ):
        monkeypatch.setattr(model.prompt_encoder, "forward", _prompt_tokens)
        monkeypatch.setattr(model.mask_decoder, "forward", decoder)
    return models


def _ours(predictor, embedding, maps, **params) -> np.ndarray:
    apg = ApgParams(**params)
    candidates = drain(apg_decode(predictor, embedding, maps, apg))
    proposed = apg_labels(candidates, apg)
    labels = np.zeros(SHAPE, np.int32)
    for k in range(len(proposed)):  # the objects as phase 2 receives them
        rows = proposed.runs[0].decode_rows(k, 0, SHAPE[0])
        assert not labels[rows].any()
        labels[rows] = k + 1
    return labels


def _same_objects(first: np.ndarray, second: np.ndarray) -> None:
    """The same objects, whatever their ids."""
    pairs = np.unique(np.stack([first.ravel(), second.ravel()]), axis=1)
    assert ((pairs[0] == 0) == (pairs[1] == 0)).all(), "background differs"
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


CASES = {
    "defaults": {},
    "loose NMS, over the smaller": {"nms_threshold": 0.6, "intersection_over_min": True},
    "tight seeds, no size filter": {"center_distance_threshold": 0.3, "min_size": 0},
    "multimask": {"multimask": True, "prompts_per_batch": 5},
    "box refinement": {"box_refinement": True},
}
UPSTREAM_NAMES = {"box_refinement": "refine_with_box_prompts", "multimask": "multimasking",
                  "prompts_per_batch": "batch_size", "nms_threshold": "nms_threshold"}  # fmt: skip


def _upstream_params(params: dict) -> dict:
    return {UPSTREAM_NAMES.get(k, k): v for k, v in params.items()}


@pytest.mark.parametrize("params", list(CASES.values()), ids=list(CASES))
def test_labels_equal_micro_sams(synthetic, params):
    sam_predictor, predictor, embedding = synthetic
    maps = _maps()
    if params.get("box_refinement"):
        # micro-sam clips a grown box's y to the plane's width (and x to its height):
        # objects kept clear of the rows where that differs (apg module docstring)
        maps[0][150:] = 0
    expected = oracle.reference_apg(sam_predictor, *maps, **_upstream_params(params))
    ours = _ours(predictor, embedding, maps, **params)
    assert expected.max() >= 8  # many objects (and the NMS had duplicates to remove)
    _same_objects(expected, ours)


def test_seeds_prompt_duplicates_that_nms_removes(synthetic):
    _, predictor, embedding = synthetic
    maps = _maps()
    apg = ApgParams()
    candidates = drain(apg_decode(predictor, embedding, maps, apg))
    kept = apg_labels(candidates, apg)
    assert len(candidates) > len(kept) > 8  # duplicates went, objects stayed


@pytest.mark.parametrize("params", [{"nms_threshold": 0.3}])  # micro-sam's: 40 s a case
def test_random_weights_labels_equal_micro_sams(models, params):
    sam_predictor, predictor, embedding = models  # the real decoder: speckled masks
    maps = _maps(seed=1)  # min_size 0: every speckle fragment is an object
    expected = oracle.reference_apg(sam_predictor, *maps, min_size=0, **_upstream_params(params))
    ours = _ours(predictor, embedding, maps, min_size=0, **params)
    assert expected.max() > 100
    _same_objects(expected, ours)
