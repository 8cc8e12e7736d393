"""SAM 2.1 for images (encoder, prompt path, decoder) against Meta's ``sam2``: random
weights, the official configs, the image predictor's decoder settings."""

from __future__ import annotations

import pytest
import torch
from tests.oracle.sam2_upstream import reference_decode, reference_image_features, reference_sam2

from napari_segany.core.errors import InputError
from napari_segany.core.model.sam2 import build_sam2, split_image_state
from napari_segany.core.model.sam2_decoder import _stable_or_best


def _pair(size: str, seed: int):
    reference = reference_sam2(size, seed=seed)
    ours = build_sam2(size).eval()
    image_state, memory_state = split_image_state(reference.state_dict())
    ours.load_state_dict(image_state, strict=True)  # every image key, same shapes
    assert memory_state and not any(key.startswith("sam_") for key in memory_state)
    return reference, ours


def _prompt_sets(generator: torch.Generator):
    """(points_xy, labels, boxes_xyxy, mask_input, multimask) in the 1024 frame."""
    points = torch.rand(1, 3, 2, generator=generator) * 1024
    labels = torch.tensor([[1, 0, 1]])
    boxes = torch.tensor([[100.0, 150.0, 600.0, 700.0], [400.0, 50.0, 1000.0, 500.0]])
    mask = torch.randn(1, 1, 256, 256, generator=generator) * 4
    return [
        (points[:, :1], labels[:, :1], None, None, True),  # one click, three candidates
        (points, labels, None, None, False),  # several points, one (dynamic) mask
        (None, None, boxes[:1], None, False),  # a box
        (points[:, :1].expand(2, -1, -1), labels[:, :1].expand(2, -1), boxes, None, True),
        (points[:, :2], labels[:, :2], None, mask, False),  # refining a previous mask
    ]


@pytest.mark.parametrize(("size", "seed"), [("tiny", 11), ("base_plus", 12)])
def test_embedding_and_prompts_equal_the_reference(size, seed):
    reference, ours = _pair(size, seed)
    pixels = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        embedding, high_res = reference_image_features(reference, pixels)
        features = ours.encode(pixels)
        scale = float(embedding.abs().max())  # float rounding: sums in another order
        torch.testing.assert_close(features.embedding, embedding, rtol=1e-5, atol=1e-5 * scale)
        generator = torch.Generator().manual_seed(seed + 1)
        for points, labels, boxes, mask, multimask in _prompt_sets(generator):
            want = reference_decode(
                reference, embedding, high_res, points, labels, boxes, mask, multimask
            )
            got = ours.decode_with_object_scores(features, points, labels, boxes, mask, multimask)
            assert all(
                torch.equal(a, b)
                for a, b in zip(
                    ours.decode(features, points, labels, boxes, mask, multimask), got[:2]
                )
            )
            assert got[0].shape == want[0].shape
            scale = float(want[0].abs().max())
            torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-3 * scale)
            torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-3)
            torch.testing.assert_close(got[2], want[2], rtol=0, atol=1e-3)
            overlap = ((got[0] > 0) & (want[0] > 0)).sum() / ((got[0] > 0) | (want[0] > 0)).sum()
            assert overlap >= 0.98


def test_unstable_single_mask_falls_back_to_the_best_candidate():
    """Stability = area above +0.05 / area above -0.05 of the single mask's logits."""
    masks = torch.zeros(2, 4, 4, 4)
    masks[:, 0] = -1.0
    masks[0, 0, :2] = 1.0  # object 0: a crisp single mask, stable
    masks[1, 0, :2] = 0.01  # object 1: every logit inside (-0.05, 0.05]: unstable
    masks[1, 0, 2:] = 0.0
    masks[:, 1:] = torch.arange(1, 4).view(1, 3, 1, 1).float()
    scores = torch.tensor([[0.5, 0.9, 0.1, 0.2], [0.5, 0.1, 0.2, 0.8]])
    chosen, chosen_scores = _stable_or_best(masks, scores)
    assert chosen.shape == (2, 1, 4, 4)
    assert torch.equal(chosen[0, 0], masks[0, 0]) and chosen_scores[0, 0] == 0.5
    assert torch.equal(chosen[1, 0], masks[1, 3]) and chosen_scores[1, 0] == 0.8


def test_encode_refuses_a_padded_or_unsized_frame():
    model = build_sam2("tiny").eval()
    with torch.inference_mode(), pytest.raises(InputError, match="1024 x 1024"):
        model.encode(torch.zeros(1, 3, 1024, 768))
