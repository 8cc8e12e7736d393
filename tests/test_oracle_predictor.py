"""Oracle: our Predictor against upstream SamPredictor, same random weights, fp32.

For each architecture, an upstream model with random weights is built and its state
dict loaded into ours. For uint8 RGB planes of several (non-square) shapes we compare
the embeddings, then masks, IoU scores and low-resolution logits for point, points with
negatives, box and box + point prompts, with and without multimask output.

Encoder forwards are expensive (ViT-B: ~15 s each on 2 cores), so every plane is
embedded once per model and shared by all tests (module-scoped fixtures).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany.core.embeddings import Embedding
from napari_segany.core.image import PIXEL_MEAN, PIXEL_STD, preprocess
from napari_segany.core.model.build import build_sam
from napari_segany.core.predictor import Predictor

upstream = pytest.importorskip("tests.oracle.upstream")

pytestmark = pytest.mark.slow

CASES = [
    ("vit_t", (300, 500)),
    ("vit_t", (512, 512)),
    ("vit_t", (700, 240)),
    ("vit_b", (700, 240)),  # one ViT-B plane: each forward costs ~15 s
]


def _plane(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A uint8 RGB plane with smooth structure (cells) plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    rgb = np.zeros((*shape, 3), np.float64)
    for _ in range(6):
        cy, cx, radius = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(20, 80)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        rgb[inside] += rng.uniform(40, 120, 3)
    rgb += rng.normal(30, 10, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models():
    """arch -> (upstream SamPredictor, our Predictor), built on first use."""
    built = {}

    def get(arch: str):
        if arch not in built:
            reference = upstream.random_upstream_sam(arch, seed=1)
            # randomize_ also scrambles the normalisation buffers, which are not weights
            reference.pixel_mean.copy_(torch.tensor(PIXEL_MEAN).view(3, 1, 1))
            reference.pixel_std.copy_(torch.tensor(PIXEL_STD).view(3, 1, 1))
            ours = build_sam(arch)
            ours.load_state_dict(reference.state_dict())
            built[arch] = (
                upstream.segment_anything.SamPredictor(reference)
                if arch != "vit_t"
                else upstream.mobile_sam.SamPredictor(reference),
                Predictor(ours, "cpu", "fp32", model_key=arch),
            )
        return built[arch]

    return get


@pytest.fixture(scope="module", params=CASES, ids=[f"{a}-{h}x{w}" for a, (h, w) in CASES])
def case(request, models):
    """Both predictors with the same plane set; embeddings computed once per case."""
    arch, shape = request.param
    reference, ours = models(arch)
    rgb = _plane(shape, seed=shape[0])
    with torch.inference_mode():
        reference.set_image(rgb)
    embedding = ours.embed(rgb)
    return {
        "reference": reference,
        "ours": ours,
        "embedding": embedding,
        "shared": Embedding(  # upstream's own features: isolates the prompt path
            reference.features.clone(), embedding.original_hw, embedding.input_hw, arch
        ),
        "shape": shape,
    }


def _prompts(shape):
    height, width = shape
    return {
        "point": {"points_yx": [[0.45 * height, 0.55 * width]], "labels": [1]},
        "points_and_negatives": {
            "points_yx": [
                [0.3 * height, 0.3 * width],
                [0.6 * height, 0.7 * width],
                [0.1 * height, 0.9 * width],
            ],
            "labels": [1, 1, 0],
        },
        "box": {"box_yxyx": [0.2 * height, 0.1 * width, 0.8 * height, 0.6 * width]},
        "box_and_point": {
            "box_yxyx": [0.1 * height, 0.3 * width, 0.9 * height, 0.95 * width],
            "points_yx": [[0.5 * height, 0.6 * width]],
            "labels": [0],
        },
    }


def _upstream_predict(reference, prompts, multimask):
    """Upstream's call for our (y, x) prompts: its API takes (x, y)."""
    points = prompts.get("points_yx")
    box = prompts.get("box_yxyx")
    with torch.inference_mode():
        return reference.predict(
            point_coords=None if points is None else np.asarray(points)[:, ::-1],
            point_labels=None if points is None else np.asarray(prompts["labels"]),
            box=None if box is None else np.asarray(box)[[1, 0, 3, 2]],
            multimask_output=multimask,
        )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def test_model_input_matches_upstream(case):
    """Same resize (PIL-exact or one grey level), normalisation and padding."""
    reference = case["reference"]
    rgb = _plane(case["shape"], seed=case["shape"][0])
    resized = reference.transform.apply_image(rgb)
    tensor = torch.as_tensor(resized).permute(2, 0, 1)[None].float()
    expected = reference.model.preprocess(tensor)
    ours = preprocess(rgb, 1024)
    assert ours.shape == expected.shape == (1, 3, 1024, 1024)
    difference = (ours - expected).abs()
    assert difference.max() <= 1.0 / 57.0 + 1e-4  # at most one grey level / std
    assert (difference > 1e-4).float().mean() < 0.01


def test_embeddings_close(case):
    ours = case["embedding"].features
    expected = case["reference"].features
    assert ours.shape == expected.shape == (1, 256, 64, 64)
    relative = (ours - expected).norm() / expected.norm()
    assert relative < 2e-3, float(relative)


@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
@pytest.mark.parametrize("kind", ["point", "points_and_negatives", "box", "box_and_point"])
def test_prompt_path_matches_upstream(case, kind, multimask):
    """On upstream's own embedding: masks, scores and logits equal upstream's."""
    prompts = _prompts(case["shape"])[kind]
    masks, scores, logits = _upstream_predict(case["reference"], prompts, multimask)
    result = case["ours"].predict(case["shared"], multimask=multimask, **prompts)
    assert result.masks.shape == masks.shape and result.masks.dtype == bool
    for ours_mask, expected_mask in zip(result.masks, masks):
        assert _iou(ours_mask, expected_mask) >= 0.98
    np.testing.assert_allclose(result.scores, scores, atol=1e-3)
    scale = max(1.0, float(np.abs(logits).max()))
    assert np.abs(result.logits - logits).max() <= 1e-3 * scale


@pytest.mark.parametrize("kind", ["point", "points_and_negatives", "box"])
def test_end_to_end_matches_upstream(case, kind):
    """Our embedding + our prompt path against upstream's whole pipeline."""
    prompts = _prompts(case["shape"])[kind]
    masks, scores, _ = _upstream_predict(case["reference"], prompts, True)
    result = case["ours"].predict(case["embedding"], multimask=True, **prompts)
    for ours_mask, expected_mask in zip(result.masks, masks):
        assert _iou(ours_mask, expected_mask) >= 0.98
    np.testing.assert_allclose(result.scores, scores, atol=1e-2)


def test_batched_boxes_match_upstream_predict_torch(case):
    reference, shape = case["reference"], case["shape"]
    height, width = shape
    boxes_yxyx = np.array(
        [
            [0.1 * height, 0.1 * width, 0.5 * height, 0.5 * width],
            [0.4 * height, 0.3 * width, 0.95 * height, 0.9 * width],
        ]
    )
    boxes_xyxy = reference.transform.apply_boxes(boxes_yxyx[:, [1, 0, 3, 2]], shape)
    with torch.inference_mode():
        masks, scores, _ = reference.predict_torch(
            None, None, torch.as_tensor(boxes_xyxy, dtype=torch.float32), None, True
        )
    result = case["ours"].predict(case["shared"], box_yxyx=boxes_yxyx)
    assert result.masks.shape == tuple(masks.shape)
    for ours_masks, expected_masks in zip(result.masks, masks.numpy()):
        for ours_mask, expected_mask in zip(ours_masks, expected_masks):
            assert _iou(ours_mask, expected_mask) >= 0.98
    np.testing.assert_allclose(result.scores, scores.numpy(), atol=1e-3)
