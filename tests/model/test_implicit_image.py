"""The implicit two-way transformer (image never formed) equals the blockwise one.

The blockwise path is itself checked against upstream SAM (test_decoder.py); here both
of our paths run on the same random weights, for depths, widths, head counts, batches
of prompt sets and token counts that SAM's decoder does not have, so the algebra
(norm statistics from the factors, carried row bases) is checked beyond one shape.
"""

from __future__ import annotations

import pytest
import torch

from napari_segany.core.model.implicit_image import (
    attend_implicit,
    implicit_is_cheaper,
    project_plane,
)
from napari_segany.core.model.mask_decoder import MaskDecoder
from napari_segany.core.model.subpixel import subpixel_weight
from napari_segany.core.model.transformer import TwoWayTransformer


def _random_decoder(depth: int, width: int, heads: int, seed: int) -> MaskDecoder:
    torch.manual_seed(seed)
    transformer = TwoWayTransformer(depth, width, heads, 4 * width)
    decoder = MaskDecoder(width, transformer=transformer).eval()
    with torch.no_grad():
        for parameter in decoder.parameters():
            # Biases and norm gains away from 0 / 1: every carried term matters.
            parameter.normal_(
                0.3 if parameter.dim() == 1 else 0.0, 0.3 if parameter.dim() == 1 else 0.05
            )
    return decoder


@torch.inference_mode()
@pytest.mark.parametrize(
    "depth, width, heads, prompts, tokens",
    [(2, 256, 8, 1, 7), (2, 256, 8, 3, 9), (1, 128, 4, 2, 5), (3, 64, 2, 2, 6)],
)
def test_implicit_transformer_equals_blockwise(depth, width, heads, prompts, tokens):
    decoder = _random_decoder(depth, width, heads, seed=depth * 10 + prompts)
    transformer = decoder.transformer
    generator = torch.Generator().manual_seed(tokens)
    # Channel means away from 0 and a spread of scales stress the norm statistics.
    embedding = torch.randn(1, width, 16, 16, generator=generator) * 2 + 0.5
    pe = torch.randn(1, width, 16, 16, generator=generator)
    token_embedding = torch.randn(prompts, tokens, width, generator=generator)
    weight, bias = subpixel_weight(decoder.output_upscaling[0]), torch.randn(width)
    prepared = transformer.prepare_image(embedding, pe)

    expected_tokens, image = transformer.attend(prepared, token_embedding)
    expected_readout = image.image().expand(prompts, -1, -1) @ weight + bias

    plane = project_plane(transformer, prepared, weight)
    read = [0, *range(2, tokens - 2)]  # some tokens skipped, as the decoder's unused mask
    got_tokens, blocks = attend_implicit(
        transformer, plane, token_embedding, (weight, bias), 100, read
    )
    got_readout = torch.cat([block.clone() for block in blocks], 1)  # one buffer, reused
    torch.testing.assert_close(got_tokens, expected_tokens[:, read], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_readout, expected_readout, rtol=1e-4, atol=1e-4)


def test_cost_rule_takes_the_implicit_path_only_where_it_saves_work():
    # SAM's decoder (256 channels, 8 heads): one click (7 tokens), a box, up to 5 points.
    assert implicit_is_cheaper(256, 8, 7, 2, 256)
    assert implicit_is_cheaper(256, 8, 10, 2, 256)
    # Many tokens, or a narrow embedding (the built-in model's 128 channels): blockwise.
    assert not implicit_is_cheaper(256, 8, 20, 2, 256)
    assert not implicit_is_cheaper(128, 8, 7, 2, 128)


@torch.inference_mode()
def test_decoder_keeps_plane_products_only_for_the_path_it_takes():
    embedding = torch.randn(1, 256, 16, 16)
    pe = torch.randn(1, 256, 16, 16)
    dense = torch.randn(1, 256, 1, 1)
    wide = _random_decoder(2, 256, 8, seed=1)
    one_click = torch.randn(1, 2, 256)
    wide(embedding, pe, one_click, dense, True)
    assert wide._image_cache.plane is not None
    narrow = _random_decoder(2, 128, 8, seed=2)
    narrow(embedding[:, :128], pe[:, :128], one_click[..., :128], dense[:, :128], True)
    assert narrow._image_cache.plane is None
