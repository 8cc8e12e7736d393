"""Thresholded exact-4x enlargement equals torch's bilinear resize, then ``> 0``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_segany.core.predictor import iter_upscaled_logits, upscale_masks
from napari_segany.core.upscale_x4 import threshold_upscaled_x4


def _reference(low_res: torch.Tensor, out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(masks, |values|) of torch's bilinear 4x enlargement cropped to ``out_hw``."""
    h, w = low_res.shape[-2:]
    values = F.interpolate(low_res[:, None], (4 * h, 4 * w), mode="bilinear", align_corners=False)
    values = values[:, 0, : out_hw[0], : out_hw[1]]
    return (values > 0).numpy(), values.abs().numpy()


@pytest.mark.parametrize("out_hw", [(256, 256), (256, 171), (175, 256), (3, 5), (1, 1)])
@pytest.mark.parametrize("smooth", [False, True])
def test_threshold_equals_bilinear_then_threshold(out_hw, smooth):
    generator = torch.Generator().manual_seed(sum(out_hw))
    low_res = torch.randn(3, 64, 64, generator=generator) * 4
    if smooth:  # objects: large regions of one sign, as real logits
        low_res = F.interpolate(low_res[:, None, :8, :8], (64, 64), mode="bilinear")[:, 0]
    expected, magnitude = _reference(low_res, out_hw)
    got = threshold_upscaled_x4(low_res, out_hw)
    assert got.dtype == np.bool_ and got.shape == (3, *out_hw)
    differing = got != expected
    # Only values within float rounding of 0 may come out differently.
    assert not np.any(differing & (magnitude > 1e-5))


def test_upscale_masks_takes_the_fast_path_with_the_same_masks_in_chunks():
    generator = torch.Generator().manual_seed(7)
    low_res = torch.randn(2, 11, 64, 64, generator=generator) * 4  # 22 masks: two chunks
    input_hw = original_hw = (256, 200)
    masks = upscale_masks(low_res, input_hw, original_hw, image_size=256)
    flat = low_res.reshape(22, 64, 64)
    generic = np.concatenate(
        [
            (values > 0).numpy()
            for _, values in iter_upscaled_logits(flat, input_hw, original_hw, 256)
        ]
    )
    _, magnitude = _reference(flat, original_hw)
    assert masks.shape == (2, 11, 256, 200)
    assert not np.any((masks.reshape(22, 256, 200) != generic) & (magnitude > 1e-5))
