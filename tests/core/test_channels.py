"""Which axis holds channels, and how channels become R, G, B (core.channels)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.core.channels import (
    COLOUR_RULE,
    SINGLE_STAIN_RULE,
    ChannelRule,
    channels_last,
    describe_channels,
    plane_layout,
)
from napari_segany.core.errors import ImageError
from napari_segany.core.image import to_model_rgb

RNG = np.random.default_rng(11)
RULES = [COLOUR_RULE, SINGLE_STAIN_RULE]


def _stain(dtype=np.uint16, shape=(40, 52)) -> np.ndarray:
    stain = RNG.normal(300, 20, shape)
    stain[10:25, 12:30] += 2000
    return stain.astype(dtype)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("channel", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_single_stain_reads_as_grey_in_any_channel(rule, channel, dtype):
    stain = _stain(np.float32) / 10 if dtype == np.uint8 else _stain(np.float32)
    stain = stain.astype(dtype)
    rgb = np.zeros(stain.shape + (3,), dtype)
    rgb[:, :, channel] = stain
    grey = to_model_rgb(stain, rule=rule)
    np.testing.assert_array_equal(to_model_rgb(rgb, rule=rule), grey)
    two = np.zeros(stain.shape + (2,), dtype)
    two[:, :, channel % 2] = stain
    np.testing.assert_array_equal(to_model_rgb(two, rule=rule), grey)


def test_two_stains_follow_the_model_rule():
    nuclei, other = _stain(), _stain()[::-1]
    both = np.stack([nuclei, other], axis=-1)
    colour = to_model_rgb(both, rule=COLOUR_RULE)
    np.testing.assert_array_equal(colour[..., 0], to_model_rgb(nuclei)[..., 0])
    np.testing.assert_array_equal(colour[..., 1], to_model_rgb(other)[..., 0])
    assert not colour[..., 2].any()
    np.testing.assert_array_equal(to_model_rgb(both, rule=SINGLE_STAIN_RULE), to_model_rgb(nuclei))
    # the second stain alone: pick it
    np.testing.assert_array_equal(
        to_model_rgb(both, channels=[1], rule=SINGLE_STAIN_RULE), to_model_rgb(other)
    )


@pytest.mark.parametrize("rule", RULES)
def test_colour_composites_and_flat_images_stay_rgb(rule):
    composite = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    composite[..., 0] = 0  # empty red, cells in green, nuclei in blue: two stains
    np.testing.assert_array_equal(to_model_rgb(composite, rule=rule), composite)
    flat = np.zeros((20, 30, 3), np.uint8) + np.uint8([10, 20, 30])
    np.testing.assert_array_equal(to_model_rgb(flat, rule=rule), flat)


def test_channel_rule_refuses_unknown_names():
    with pytest.raises(ValueError, match="two_channels"):
        ChannelRule("blue")


@pytest.mark.parametrize(
    ("shape", "layout"),
    [((64, 80), "YX"), ((64, 80, 3), "YXC"), ((64, 80, 4), "YXC"), ((64, 80, 7), "YXC"),
     ((3, 5000, 3), "YXC"), ((1, 1, 2), "YXC")],
)  # fmt: skip
def test_planes_read_without_a_guess(shape, layout):
    assert plane_layout(shape) == layout


@pytest.mark.parametrize(
    ("shape", "first_hint", "second_hint"),
    [
        ((3, 64, 80), "channel_axis=0", "segment_everything_stack"),
        ((2, 512, 512), "channel_axis=0", "segment_everything_stack"),
        ((12, 64, 80), "segment_everything_stack", "channel_axis=0"),
        ((40, 64, 80), "segment_everything_stack", "channel_axis=0"),
        ((64, 80, 20), "segment_everything_stack", "channel_axis=-1"),
    ],
)
def test_ambiguous_arrays_are_refused_naming_axes_and_fix(shape, first_hint, second_hint):
    with pytest.raises(ImageError) as caught:
        to_model_rgb(np.zeros(shape, np.uint8))
    message = str(caught.value)
    assert str(shape) in message and "channel_axis=-1" in message
    assert message.index(first_hint) < message.index(second_hint)


def test_channel_axis_moves_channels_last():
    cyx = RNG.integers(0, 256, (3, 30, 40), dtype=np.uint8)
    np.testing.assert_array_equal(to_model_rgb(cyx, channel_axis=0), np.moveaxis(cyx, 0, -1))
    many = RNG.integers(0, 256, (30, 40, 20), dtype=np.uint8)
    np.testing.assert_array_equal(to_model_rgb(many, channel_axis=-1), many[..., :3])
    assert channels_last(cyx, 0).shape == (30, 40, 3)
    for bad in (3, -4):
        with pytest.raises(ImageError, match="channel_axis"):
            to_model_rgb(cyx, channel_axis=bad)
    with pytest.raises(ImageError, match="channel_axis"):
        to_model_rgb(cyx[0], channel_axis=0)  # a 2-D plane has no channel axis


@pytest.mark.parametrize(
    ("shape", "options", "text"),
    [
        ((64, 80), {}, "grey"),
        ((64, 80, 3), {}, "R = channel 0, G = channel 1, B = channel 2"),
        ((64, 80, 2), {}, "R = channel 0, G = channel 1"),
        ((64, 80, 2), {"rule": SINGLE_STAIN_RULE}, "channel 0 as grey (unused: channel 1;"),
        ((64, 80, 5), {"channels": [3]}, "channel 3 as grey (unused: channel 0, 1, 2, 4;"),
        ((64, 80, 3), {"signal": [False, True, False]}, "channel 1 as grey (unused: channel 0, 2;"),
        ((2, 64, 80), {"channel_axis": 0, "rule": SINGLE_STAIN_RULE}, "channel 0 as grey"),
        ((64, 80, 4), {}, "R = channel 0, G = channel 1, B = channel 2 (unused: channel 3;"),
    ],
)
def test_describe_channels_says_what_is_applied(shape, options, text):
    assert describe_channels(shape, **options).startswith(text)


def test_describe_channels_refuses_what_conversion_refuses():
    with pytest.raises(ImageError, match="channel_axis=0"):
        describe_channels((3, 64, 80))
    with pytest.raises(ImageError, match="channels"):
        describe_channels((64, 80, 2), channels=[2])
