"""Predictor: validation, the (y, x) -> (x, y) flip and scaling, batching, upscaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.fakes import tiny_architecture

from napari_segany.core import predictor as predictor_module
from napari_segany.core.errors import ImageError, PromptError
from napari_segany.core.model.build import build_sam
from napari_segany.core.predictor import Predictor, upscale_masks

TINY = tiny_architecture(window_size=14)
HW = (120, 200)  # non-square: model frame 614 x 1024


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(build_sam(TINY), "cpu", "fp32", model_key="tiny")


@pytest.fixture(scope="module")
def embedding(predictor):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*HW, 3), dtype=np.uint8)
    rgb[30:80, 50:120] = 250
    return predictor.embed(rgb)


def test_embed_records_sizes_and_float32_features(predictor, embedding):
    assert embedding.original_hw == HW and embedding.input_hw == (614, 1024)
    assert embedding.features.shape == (1, 32, 64, 64)
    assert embedding.features.dtype == torch.float32 and embedding.model_key == "tiny"


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 3), np.float32),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((0, 8, 3), np.uint8),
    ],
)
def test_embed_rejects_non_rgb_uint8(predictor, bad):
    with pytest.raises(ImageError, match="to_model_rgb"):
        predictor.embed(bad)


def test_bf16_embedding_is_float32_and_close(embedding):
    torch.manual_seed(0)
    bf16 = Predictor(build_sam(TINY), "cpu", "bf16")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*HW, 3), dtype=np.uint8)
    rgb[30:80, 50:120] = 250
    features = bf16.embed(rgb).features
    assert features.dtype == torch.float32
    error = (features - embedding.features).norm() / embedding.features.norm()
    assert 0 < error < 0.05


def test_point_prompt_is_flipped_and_scaled_once(predictor, embedding):
    """(y, x) in the plane -> (x * w'/W, y * h'/H) in the model frame, nothing else."""
    result = predictor.predict(embedding, points_yx=[[10.0, 150.0]], labels=[1])
    model_xy = torch.tensor([[[150.0 * 1024 / 200, 10.0 * 614 / 120]]])
    with torch.inference_mode():
        logits, scores = predictor.model.decode(
            embedding.features, model_xy, torch.tensor([[1]]), None, None, True
        )
    np.testing.assert_allclose(result.logits, logits[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.scores, scores[0].numpy(), rtol=1e-5, atol=1e-6)
    assert result.masks.shape == (3, *HW) and result.masks.dtype == bool
    assert result.scores.dtype == np.float32 and result.logits.shape == (3, 256, 256)


def test_box_prompt_is_flipped_and_scaled_once(predictor, embedding):
    result = predictor.predict(embedding, box_yxyx=[5.0, 20.0, 100.0, 180.0], multimask=False)
    box_xyxy = torch.tensor(
        [[20.0 * 1024 / 200, 5.0 * 614 / 120, 180.0 * 1024 / 200, 100.0 * 614 / 120]]
    )
    with torch.inference_mode():
        logits, _ = predictor.model.decode(embedding.features, None, None, box_xyxy, None, False)
    np.testing.assert_allclose(result.logits, logits[0].numpy(), rtol=1e-5, atol=1e-5)
    assert result.masks.shape == (1, *HW) and result.scores.shape == (1,)


def test_batched_boxes_equal_single_boxes_and_share_points(predictor, embedding):
    boxes = np.array([[5, 20, 100, 180], [40, 60, 70, 90]], dtype=float)
    points, labels = [[50.0, 70.0]], [0]
    batch = predictor.predict(embedding, points, labels, box_yxyx=boxes)
    assert batch.masks.shape == (2, 3, *HW) and batch.scores.shape == (2, 3)
    for index, box in enumerate(boxes):
        single = predictor.predict(embedding, points, labels, box_yxyx=box)
        np.testing.assert_allclose(batch.logits[index], single.logits, atol=1e-4)
        assert np.mean(batch.masks[index] != single.masks) < 1e-3


def test_mask_input_forms_are_equivalent(predictor, embedding):
    first = predictor.predict(embedding, [[60.0, 100.0]], [1])
    previous = first.logits[np.argmax(first.scores)]
    results = [
        predictor.predict(embedding, [[60.0, 100.0]], [1], mask_input=form, multimask=False)
        for form in (previous, previous[None], previous[None, None])
    ]
    for other in results[1:]:
        np.testing.assert_array_equal(other.logits, results[0].logits)
    without = predictor.predict(embedding, [[60.0, 100.0]], [1], multimask=False)
    assert not np.allclose(without.logits, results[0].logits)  # the mask input is used


BAD_PROMPTS = [
    ({"points_yx": [10, 20], "labels": [1]}, "shape"),
    ({"points_yx": [[10, 20, 30]], "labels": [1]}, "shape"),
    ({"points_yx": [[10, 20]], "labels": [1, 1]}, "labels"),
    ({"points_yx": [[10, 20]], "labels": [2]}, "labels"),
    ({"points_yx": [[10, 20]], "labels": [-1]}, "labels"),
    ({"points_yx": [[10, 20]], "labels": [0.5]}, "labels"),
    ({"points_yx": [[10, 20]]}, "together"),
    ({"labels": [1]}, "together"),
    ({"points_yx": [[120, 20]], "labels": [1]}, "outside"),
    ({"points_yx": [[10, 200]], "labels": [1]}, "outside"),
    ({"points_yx": [[-0.5, 20]], "labels": [1]}, "outside"),
    ({"points_yx": [[np.nan, 20]], "labels": [1]}, "NaN"),
    ({"points_yx": [[10, np.inf]], "labels": [1]}, "NaN"),
    ({"points_yx": [["a", 20]], "labels": [1]}, "numeric"),
    ({"box_yxyx": [1, 2, 3]}, "shape"),
    ({"box_yxyx": np.zeros((0, 4))}, "shape"),
    ({"box_yxyx": [[[1, 2, 3, 4]]]}, "shape"),
    ({"box_yxyx": [50, 20, 10, 80]}, "y0 <= y1"),
    ({"box_yxyx": [5, 90, 10, 80]}, "x0 <= x1"),
    ({"box_yxyx": [5, 10, 120.5, 80]}, "outside"),
    ({"box_yxyx": [-0.5, 10, 50, 80]}, "outside"),
    ({"box_yxyx": [5, 10, 50, np.nan]}, "NaN"),
    ({"box_yxyx": [[5, 10, 50, 80], [5, 10, 50, 201]]}, "outside"),
    ({}, "at least one prompt"),
    ({"points_yx": np.zeros((0, 2)), "labels": []}, "at least one prompt"),
    ({"mask_input": np.zeros((256, 256))}, "at least one prompt"),
    ({"points_yx": [[10, 20]], "labels": [1], "mask_input": np.zeros((64, 64))}, "mask_input"),
    (
        {"points_yx": [[10, 20]], "labels": [1], "mask_input": np.zeros((2, 1, 256, 256))},
        "mask_input",
    ),
    ({"points_yx": [[10, 20]], "labels": [1], "mask_input": np.full((256, 256), np.nan)}, "NaN"),
]


@pytest.fixture(scope="module")
def reference_prediction(predictor, embedding):
    return predictor.predict(embedding, [[60.0, 100.0]], [1])


@pytest.mark.parametrize(("prompts", "message"), BAD_PROMPTS)
def test_bad_prompts_raise_prompt_error_and_change_nothing(
    predictor, embedding, reference_prediction, prompts, message
):
    features = embedding.features.clone()
    with pytest.raises(PromptError, match=message):
        predictor.predict(embedding, **prompts)
    assert torch.equal(embedding.features, features)
    after = predictor.predict(embedding, [[60.0, 100.0]], [1])
    np.testing.assert_array_equal(after.masks, reference_prediction.masks)


def test_prompts_on_the_last_pixel_are_inside(predictor, embedding):
    result = predictor.predict(embedding, [[119.9, 199.9]], [1], box_yxyx=[0, 0, 119.5, 199.5])
    assert result.masks.shape == (3, *HW)


def _upstream_chain(logits, input_hw, original_hw):
    """Upstream SAM's postprocessing, written out: 256 -> 1024, crop, -> (H, W)."""
    full = F.interpolate(logits, (1024, 1024), mode="bilinear", align_corners=False)
    cropped = full[..., : input_hw[0], : input_hw[1]]
    return F.interpolate(cropped, original_hw, mode="bilinear", align_corners=False) > 0


@pytest.mark.parametrize("original_hw", [(120, 200), (1024, 1024), (700, 240), (2100, 1300)])
def test_upscale_equals_the_upstream_chain(original_hw, monkeypatch):
    from napari_segany.core.image import model_input_hw

    monkeypatch.setattr(predictor_module, "_UPSAMPLE_CHUNK_VALUES", 3_000_000)  # chunked
    generator = torch.Generator().manual_seed(1)
    logits = F.avg_pool2d(torch.randn(2, 3, 260, 260, generator=generator), 5, 1)[..., :256, :256]
    input_hw = model_input_hw(original_hw)
    ours = upscale_masks(logits, input_hw, original_hw)
    expected = _upstream_chain(logits, input_hw, original_hw).numpy()
    assert ours.shape == (2, 3, *original_hw) and ours.dtype == bool
    assert np.mean(ours != expected) < 1e-5


def test_embedding_of_another_model_is_refused(predictor, embedding):
    from dataclasses import replace

    from napari_segany.core.errors import InputError

    foreign = replace(embedding, model_key="vit_b")
    with pytest.raises(InputError, match="another|embed the plane again"):
        predictor.predict(foreign, [[60.0, 100.0]], [1])


def _two_bilinear_passes(logits, input_hw, original_hw):
    """Reference: 256 -> 1024 frame, crop, -> (H, W), each a plain ``F.interpolate``.

    Masks go through as separate one-channel planes: with one thread torch's kernel for
    several channels rounds differently from its kernel for one.
    """
    n_objects, n_masks = logits.shape[:2]
    planes = logits.reshape(-1, 1, *logits.shape[-2:])
    frame = F.interpolate(planes, scale_factor=4.0, mode="bilinear", align_corners=False)
    cropped = frame[..., : input_hw[0], : input_hw[1]]
    full = F.interpolate(cropped, original_hw, mode="bilinear", align_corners=False)
    return full.reshape(n_objects, n_masks, *original_hw)


@pytest.mark.parametrize("n_objects", [1, 3])
@pytest.mark.parametrize(
    "original_hw",
    [(1024, 1024), (120, 200), (1, 1), (7, 3), (333, 517), (1023, 1025), (2100, 1300), (64, 2000)],
)
def test_upscaled_masks_are_bit_identical_to_two_bilinear_passes(
    original_hw, n_objects, monkeypatch
):
    """Masks and float logits equal the plain chain bit for bit (not only nearly)."""
    from napari_segany.core.image import model_input_hw

    monkeypatch.setattr(predictor_module, "_UPSAMPLE_CHUNK_VALUES", 2_500_000)  # chunked
    generator = torch.Generator().manual_seed(sum(original_hw) + n_objects)
    logits = torch.randn(n_objects, 3, 256, 256, generator=generator)
    logits[:, :, 100:140, 60:200] = 0.0  # exact zeros upscale to exact zeros: not > 0
    input_hw = model_input_hw(original_hw)
    expected = _two_bilinear_passes(logits, input_hw, original_hw)
    masks = upscale_masks(logits, input_hw, original_hw)
    assert masks.shape == (n_objects, 3, *original_hw) and masks.dtype == bool
    np.testing.assert_array_equal(masks, (expected > 0).numpy())
    floats = torch.cat(
        [
            chunk
            for _, chunk in predictor_module.iter_upscaled_logits(
                logits.flatten(0, 1), input_hw, original_hw
            )
        ]
    )
    assert torch.equal(floats, expected.flatten(0, 1))


def test_half_size_planes_fuse_both_passes_within_rounding():
    """(h', w') == 2 (H, W) takes one fused resize: equal to the chain up to rounding."""
    from napari_segany.core.image import model_input_hw

    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 256, 256, generator=generator)
    for original_hw in [(512, 512), (512, 300), (200, 512)]:
        input_hw = model_input_hw(original_hw)
        assert tuple(input_hw) == (2 * original_hw[0], 2 * original_hw[1])
        expected = _two_bilinear_passes(logits, input_hw, original_hw)
        masks = upscale_masks(logits, input_hw, original_hw)
        assert np.mean(masks != (expected > 0).numpy()) < 1e-5


def test_predicted_masks_of_n_boxes_are_their_logits_upscaled(predictor, embedding):
    boxes = np.array([[10.0, 20.0, 90.0, 150.0], [0.0, 0.0, 119.0, 199.0], [50, 60, 52, 61]])
    result = predictor.predict(embedding, box_yxyx=boxes)
    logits = torch.as_tensor(result.logits)
    expected = _two_bilinear_passes(logits, embedding.input_hw, HW) > 0
    assert result.masks.shape == (3, 3, *HW)
    np.testing.assert_array_equal(result.masks, expected.numpy())
