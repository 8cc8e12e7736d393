"""Plane -> uint8 RGB conversion rules, resize and model input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from napari_segany.core.errors import ImageError
from napari_segany.core.image import (
    PIXEL_MEAN,
    PIXEL_STD,
    model_input_hw,
    preprocess,
    resize_longest_side,
    to_model_rgb,
)

RNG = np.random.default_rng(7)


def test_uint8_grey_and_rgb_pass_through_unchanged():
    grey = RNG.integers(0, 256, (31, 47), dtype=np.uint8)
    rgb = RNG.integers(0, 256, (31, 47, 3), dtype=np.uint8)
    out = to_model_rgb(grey)
    assert out.shape == (31, 47, 3) and out.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], grey)
    np.testing.assert_array_equal(to_model_rgb(rgb), rgb)
    np.testing.assert_array_equal(to_model_rgb(grey[..., None]), out)


def test_rgba_drops_alpha_and_two_channels_become_red_green():
    rgba = RNG.integers(0, 256, (10, 12, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_model_rgb(rgba), rgba[..., :3])
    two = RNG.integers(0, 256, (10, 12, 2), dtype=np.uint8)
    out = to_model_rgb(two)
    np.testing.assert_array_equal(out[..., :2], two)
    assert not out[..., 2].any()


def test_five_channels_first_three_or_chosen_ones():
    five = RNG.integers(0, 256, (9, 8, 5), dtype=np.uint8)
    np.testing.assert_array_equal(to_model_rgb(five), five[..., :3])
    np.testing.assert_array_equal(to_model_rgb(five, channels=(4, 2, 0)), five[..., [4, 2, 0]])
    single = to_model_rgb(five, channels=[3])
    np.testing.assert_array_equal(single, np.repeat(five[..., 3:4], 3, axis=2))


@pytest.mark.parametrize("channels", [(5,), (0, 1, 2, 3), (), (-6,)])
def test_bad_channel_selection_raises(channels):
    with pytest.raises(ImageError, match="channels"):
        to_model_rgb(np.zeros((4, 4, 5), np.uint8), channels=channels)


def test_sixteen_bit_with_hot_pixels_keeps_contrast():
    ramp = np.tile(np.linspace(200, 1200, 64), (64, 1)).astype(np.uint16)
    ramp[[3, 40, 50], [5, 9, 60]] = 65535  # hot pixels
    out = to_model_rgb(ramp)[..., 0]
    background = np.delete(out.ravel(), np.ravel_multi_index(([3, 40, 50], [5, 9, 60]), (64, 64)))
    # the 200..1200 ramp spans (nearly) all grey levels, not the bottom 2% of them
    assert np.percentile(background, 95) - np.percentile(background, 5) > 200
    assert out[3, 5] == 255 and out[:, 0].max() <= 5
    assert np.all(np.diff(out[10].astype(int)) >= 0)  # monotone along the ramp


def test_contrast_limits_are_honoured_and_clip():
    image = np.array([[0, 1000, 1250], [1600, 2000, 60000]], dtype=np.uint16)
    out = to_model_rgb(image, contrast_limits=(1000, 2000))[..., 0]
    np.testing.assert_array_equal(out, [[0, 0, 64], [153, 255, 255]])
    grey8 = np.array([[10, 70, 200]], dtype=np.uint8)
    np.testing.assert_array_equal(
        to_model_rgb(grey8, contrast_limits=(10, 110))[0, :, 0], [0, 153, 255]
    )


def test_per_channel_contrast_limits():
    image = np.stack([np.full((2, 2), 40.0), np.full((2, 2), 40.0)], axis=2)
    out = to_model_rgb(image, contrast_limits=[(0, 100), (0, 200)])
    assert out[0, 0].tolist() == [102, 51, 0]


@pytest.mark.parametrize("limits", [(5, 5), (10, 2), (np.nan, 3), (1, 2, 3), [(0, 1)] * 3])
def test_bad_contrast_limits_raise(limits):
    with pytest.raises(ImageError, match="contrast_limits"):
        to_model_rgb(np.zeros((4, 4), np.float32), contrast_limits=limits)


def test_nan_and_inf_are_tolerated():
    image = np.array([[np.nan, 0.0, 1.0, 2.0, np.inf, -np.inf]] * 4, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_model_rgb(image)[0, :, 0]
        limited = to_model_rgb(image, contrast_limits=(0, 3))[0, :, 0]
    assert out[0] == 0 and out[4] == 255 and out[5] == 0
    assert out[1] < out[2] < out[3]
    np.testing.assert_array_equal(limited, [0, 0, 85, 170, 255, 0])


def test_constant_and_all_nan_images_give_constant_output_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for image in (
            np.full((5, 6), 7.5),
            np.full((5, 6), 300, np.uint16),
            np.full((5, 6), np.nan, np.float32),
        ):
            out = to_model_rgb(image)
            assert out.shape == (5, 6, 3) and np.unique(out).size == 1


def test_sparse_spots_on_flat_background_stay_visible():
    image = np.zeros((100, 100), np.uint16)
    image[50, 50] = 900  # one spot: 0.5 / 99.5 percentiles are both 0
    out = to_model_rgb(image)[..., 0]
    assert out[50, 50] == 255 and out.sum() == 255


def test_bool_signed_and_float_inputs():
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    out = to_model_rgb(mask)
    assert out[1, 2].tolist() == [255] * 3 and out.sum() == 3 * 255
    signed = np.linspace(-300, 300, 400).reshape(20, 20).astype(np.int16)
    out = to_model_rgb(signed)[..., 0]
    assert out[0, 0] == 0 and out[-1, -1] == 255 and 100 < out[10, 0] < 155
    unit = np.linspace(0, 1, 400, dtype=np.float64).reshape(20, 20)
    out = to_model_rgb(unit)[..., 0]
    assert out[0, 0] == 0 and out[-1, -1] == 255


@pytest.mark.parametrize(
    "shape", [(10,), (2, 3, 4, 5), (0, 5), (5, 0), (5, 5, 0), (1, 2, 3, 4, 5), ()]
)
def test_bad_shapes_raise_with_guidance(shape):
    with pytest.raises(ImageError, match=r"\(H, W\).*single plane"):
        to_model_rgb(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("dtype", [np.complex64, object])
def test_non_numeric_dtypes_raise(dtype):
    with pytest.raises(ImageError, match="numeric"):
        to_model_rgb(np.zeros((4, 4), dtype=dtype))


@pytest.mark.parametrize("hw", [(300, 500), (700, 240), (1024, 1024), (1500, 700), (333, 1)])
def test_model_input_hw_matches_upstream(hw):
    from tests.oracle import upstream

    expected = upstream.segment_anything.utils.transforms.ResizeLongestSide.get_preprocess_shape(
        hw[0], hw[1], 1024
    )
    assert model_input_hw(hw, 1024) == expected
    assert max(model_input_hw(hw, 256)) == 256


@pytest.mark.parametrize(
    ("hw", "max_mismatch"),
    [((300, 500), 1e-3), ((512, 512), 1e-3), ((700, 240), 0.02), ((1500, 700), 0.3)],
)
def test_resize_matches_pil(hw, max_mismatch):
    """Upstream resizes with PIL: exact for common upscales, else within one grey level."""
    from PIL import Image

    rgb = RNG.integers(0, 256, (*hw, 3), dtype=np.uint8)
    rgb[: hw[0] // 2] //= 3  # some structure, not only noise
    ours = resize_longest_side(rgb, 1024)
    height, width = model_input_hw(hw, 1024)
    pil = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))
    assert tuple(ours.shape) == (1, 3, height, width)
    difference = np.abs(ours[0].permute(1, 2, 0).numpy() - pil.astype(np.float32))
    assert difference.max() <= 1.0
    assert np.mean(difference > 0) <= max_mismatch


def test_preprocess_normalises_and_zero_pads():
    rgb = RNG.integers(0, 256, (40, 64, 3), dtype=np.uint8)
    pixels = preprocess(rgb, image_size=128)
    assert pixels.shape == (1, 3, 128, 128) and pixels.dtype == torch.float32
    assert torch.all(pixels[:, :, 80:] == 0)  # 40 x 64 -> 80 x 128, rest is padding
    resized = resize_longest_side(rgb, 128)[0]
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    torch.testing.assert_close(pixels[0, :, :80], (resized - mean) / std)
