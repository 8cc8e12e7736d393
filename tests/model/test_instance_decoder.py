"""micro-sam's instance decoder (``core.model.instance_decoder``) against torch-em's
UNETR run through micro-sam's ``DecoderAdapter``, random weights. A 512 x 512 frame
(a 32 x 32 embedding) keeps it short: the decoder is convolutional, any size."""

from __future__ import annotations

import pytest
import torch
from tests.oracle.torch_em_upstream import (
    reference_decode,
    reference_decoder_state,
    reference_unetr,
)

from napari_segany.core.errors import CheckpointError
from napari_segany.core.model.instance_decoder import build_instance_decoder, maps_on_plane


@pytest.mark.parametrize("transposed", [False, True])
def test_decoder_equals_the_reference(transposed):
    reference = reference_unetr(transposed, seed=11, frame=512)
    ours = build_instance_decoder(reference_decoder_state(reference))  # the file's keys
    assert ours.transposed is transposed
    generator = torch.Generator().manual_seed(12)
    embedding = torch.randn(1, 256, 32, 32, generator=generator)
    with torch.inference_mode():
        for input_hw, original_hw in [((512, 512), (512, 512)), ((320, 512), (300, 480))]:
            expected = reference_decode(reference, embedding, input_hw, original_hw)
            got = maps_on_plane(ours(embedding), input_hw, original_hw)
            assert got.shape == expected.shape == (1, 3, *original_hw)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
            assert 0.05 < float(got.std())  # random weights still give maps that vary


def test_entries_that_are_not_a_decoders_are_refused():
    state = reference_decoder_state(reference_unetr(seed=3))
    state["out_conv.weight"] = torch.zeros(4, 64, 1, 1)  # a fourth output
    state.pop("base.block.1.bias")
    with pytest.raises(CheckpointError, match=r"base\.block\.1\.bias, out_conv\.weight"):
        build_instance_decoder(state, "vit_b_lm_decoder.pt")
