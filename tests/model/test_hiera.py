"""SAM 2.1's image encoder (Hiera trunk + FPN neck) against Meta's ``sam2`` package."""

from __future__ import annotations

import pytest
import torch
from tests.oracle.sam2_upstream import reference_image_encoder

from napari_segany.core.model.fpn_neck import build_sam2_image_encoder, sine_position_encoding

SIZES = ("tiny", "small", "base_plus", "large")


def _ours_from(reference: torch.nn.Module, size: str) -> torch.nn.Module:
    ours = build_sam2_image_encoder(size).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)  # same keys and shapes
    return ours


def _assert_equal_outputs(reference, ours, image: torch.Tensor) -> None:
    with torch.inference_mode():
        expected = reference(image)
        features, encodings = ours(image)
    assert len(features) == len(expected["backbone_fpn"]) == 3
    for got, want in zip(features, expected["backbone_fpn"]):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    for got, want in zip(encodings, expected["vision_pos_enc"]):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", SIZES)
def test_every_size_loads_the_official_keys_and_equals_the_reference(size):
    reference = reference_image_encoder(size, seed=3)
    ours = _ours_from(reference, size)
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    _assert_equal_outputs(reference, ours, image)


def test_full_frame_and_padded_windows_equal_the_reference():
    """At 1024 (SAM 2.1's frame) no window is padded; at 224 x 320 the stride-16 and
    stride-32 maps (14 x 20, 7 x 10) are zero-padded to their windows (14, 7) on one
    axis, and the pooled first blocks must find the same padding."""
    reference = reference_image_encoder("tiny", seed=5)
    ours = _ours_from(reference, "tiny")
    generator = torch.Generator().manual_seed(6)
    for height, width in ((1024, 1024), (224, 320)):
        image = torch.randn(1, 3, height, width, generator=generator)
        _assert_equal_outputs(reference, ours, image)


def test_feature_strides_and_channels():
    ours = build_sam2_image_encoder("small").eval()
    with torch.inference_mode():
        features, encodings = ours(torch.zeros(2, 3, 256, 320))
    assert [tuple(f.shape) for f in features] == [
        (2, 256, 64, 80),
        (2, 256, 32, 40),
        (2, 256, 16, 20),
    ]
    assert [tuple(e.shape) for e in encodings] == [
        (1, 256, 64, 80),
        (1, 256, 32, 40),
        (1, 256, 16, 20),
    ]


def test_sine_encoding_first_and_last_positions():
    """Rows fill the first half of the channels, columns the second; position p of n
    has phase 2 pi p / n (up to the 1e-6 guard) in channel 0 (sin) and 1 (cos)."""
    table = sine_position_encoding(4, 8, 256)[0]
    assert table.shape == (256, 4, 8)
    phase_row = 2 * torch.pi * torch.arange(1, 5) / 4
    phase_col = 2 * torch.pi * torch.arange(1, 9) / 8
    torch.testing.assert_close(table[0, :, 0], phase_row.sin(), atol=1e-5, rtol=0)
    torch.testing.assert_close(table[1, :, 0], phase_row.cos(), atol=1e-5, rtol=0)
    torch.testing.assert_close(table[128, 0, :], phase_col.sin(), atol=1e-5, rtol=0)
    assert torch.equal(table[:128, :, 0], table[:128, :, 5])  # rows do not depend on x


def test_unknown_size_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="base_plus"):
        build_sam2_image_encoder("huge")


def test_the_autograd_path_equals_the_banded_inference_path():
    """With autograd the stem and the blocks run on whole maps (windows, MLP); without
    it, by bands of rows, blocks writing into their input: the same features."""
    ours = build_sam2_image_encoder("tiny").eval()
    reference = reference_image_encoder("tiny", seed=10)
    ours.load_state_dict(reference.state_dict())
    image = torch.randn(1, 3, 224, 320, generator=torch.Generator().manual_seed(11))
    with torch.inference_mode():
        banded = ours(image)[0]
    whole = ours(image)[0]  # grad enabled: the whole-map path
    assert whole[0].requires_grad
    for got, want in zip(whole, banded):
        torch.testing.assert_close(
            got.detach(), want, rtol=1e-5, atol=1e-5 * float(want.abs().max())
        )


def test_the_kept_position_embedding_follows_its_parameters():
    """The stem keeps its interpolation products between images; changing the two
    position parameters in place (as loading new weights does) must refresh them."""
    reference = reference_image_encoder("tiny", seed=12)
    ours = _ours_from(reference, "tiny")
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(13))
    _assert_equal_outputs(reference, ours, image)
    with torch.no_grad():
        for model in (reference, ours):
            model.trunk.pos_embed.mul_(-2.0)
            model.trunk.pos_embed_window.add_(0.5)
    _assert_equal_outputs(reference, ours, image)


def test_bf16_encoder_stays_close_to_fp32():
    """``precision="auto"`` on bf16 CPUs: the encoder under bf16 autocast (its windowed
    blocks by bands, attention on oneDNN / batched matmuls) agrees with fp32."""
    reference = reference_image_encoder("tiny", seed=8)
    ours = _ours_from(reference, "tiny")
    image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(9))
    with torch.inference_mode():
        full = ours(image)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = ours(image)[0]
    for got, want in zip(half, full):
        relative = (got.float() - want).norm() / want.norm()
        assert relative < 0.02  # measured 0.004-0.009; the reference under bf16: 0.004-0.011
