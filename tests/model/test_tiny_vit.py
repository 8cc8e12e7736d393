"""Our TinyViT encoder against upstream MobileSAM's, on random weights.

Every parameter and BatchNorm running statistic is random (``upstream.randomize_``),
so a wrong key, a wrong head split, a wrong bias index or a wrong padding rule shows
up as a numeric mismatch.
"""

from __future__ import annotations

import pytest
import torch
from tests.oracle import upstream

from napari_segany.core.errors import InputError
from napari_segany.core.model.tiny_vit import TinyViT

# the arguments build_sam_vit_t passes, except img_size
UPSTREAM_ARGS = dict(
    in_chans=3,
    num_classes=1000,
    embed_dims=[64, 128, 160, 320],
    depths=[2, 2, 6, 2],
    num_heads=[2, 4, 5, 10],
    window_sizes=[7, 7, 14, 7],
    mlp_ratio=4.0,
    drop_rate=0.0,
    drop_path_rate=0.0,
    use_checkpoint=False,
    mbconv_expand_ratio=4.0,
    local_conv_size=3,
    layer_lr_decay=0.8,
)


def _upstream_tiny_vit(img_size: int, seed: int) -> torch.nn.Module:
    model = upstream.mobile_sam.modeling.TinyViT(img_size=img_size, **UPSTREAM_ARGS)
    return upstream.randomize_(model, seed=seed)


def _upstream_forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Upstream's forward_features, whose final reshape is hard-wired to 64 x 64."""
    tokens = model.patch_embed(x)
    for layer in model.layers:
        tokens = layer(tokens)
    side = x.shape[-1] // 16
    return model.neck(tokens.view(len(x), side, side, -1).permute(0, 3, 1, 2))


def _ours_like(reference: torch.nn.Module, img_size: int) -> TinyViT:
    ours = TinyViT(img_size=img_size).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours


def _inputs(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run single-threaded: on a shared 2-core machine, the two OpenMP threads wait on
    each other at every one of the few hundred small ops, which is 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def full_size(one_thread):
    """Upstream encoder as build_sam_vit_t makes it, ours with its weights, one output each."""
    reference = upstream.random_upstream_sam("vit_t", seed=3).image_encoder
    ours = _ours_like(reference, 1024)
    x = _inputs((1, 3, 1024, 1024))
    with torch.inference_mode():
        return ours, x, reference(x), ours(x)


def test_state_dict_keys_shapes_and_dtypes_equal_upstream():
    reference = upstream.random_upstream_sam("vit_t", seed=0).image_encoder
    theirs = reference.state_dict()
    ours = TinyViT().state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == value.shape, key
        assert ours[key].dtype == value.dtype, key
    # the classification head is in the checkpoint; index tables are not
    assert {"norm_head.weight", "head.weight", "head.bias"} <= set(ours)
    assert "layers.0.blocks.0.conv1.bn.num_batches_tracked" in ours
    assert not any("attention_bias_idxs" in key for key in ours)


def test_matches_upstream_at_1024_fp32(full_size):
    _, _, expected, actual = full_size
    assert actual.shape == (1, 256, 64, 64)
    assert actual.is_contiguous()
    scale = expected.abs().max().item()
    assert scale > 0.5  # a real signal, not a collapsed output
    torch.testing.assert_close(actual, expected, rtol=0, atol=3e-5 * scale)


def test_bf16_autocast_stays_close_to_fp32(full_size):
    ours, x, _, fp32 = full_size
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = ours(x)
    assert low.dtype == torch.bfloat16
    cosine = torch.nn.functional.cosine_similarity(low.float().flatten(), fp32.flatten(), dim=0)
    assert cosine > 0.99


def test_matches_upstream_at_256_with_batch_and_heavy_padding():
    # 256 -> token grids 64, 32, 16, 16: windows 7, 14, 7 all need padding (32 -> 35,
    # 16 -> 28, 16 -> 21), so the pad tokens' influence as keys is exercised hard
    reference = _upstream_tiny_vit(256, seed=5)
    ours = _ours_like(reference, 256)
    x = _inputs((2, 3, 256, 256))
    with torch.inference_mode():
        expected, actual = _upstream_forward(reference, x), ours(x)
    assert actual.shape == (2, 256, 16, 16)
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4 * scale)
    # images of a batch are independent
    with torch.inference_mode():
        alone = ours(x[1:])
    torch.testing.assert_close(alone, actual[1:], rtol=0, atol=1e-5 * scale)


def test_float64_agrees_to_rounding():
    # in double precision any algebraic difference (folded BatchNorm, fused attention,
    # padded q/k/v) would stand far above the ~1e-12 rounding noise
    reference = _upstream_tiny_vit(128, seed=7).double()
    reference.eval()  # refresh upstream's cached attention bias after the cast
    ours = _ours_like(reference, 128).double()
    x = _inputs((1, 3, 128, 128)).double()
    with torch.inference_mode():
        expected, actual = _upstream_forward(reference, x), ours(x)
    assert actual.dtype == torch.float64
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-10)


def test_new_weights_after_a_forward_are_used():
    # folded BatchNorm and attention biases are cached; loading weights must refresh them
    first, second = _upstream_tiny_vit(128, seed=11), _upstream_tiny_vit(128, seed=12)
    ours = _ours_like(first, 128)
    x = _inputs((1, 3, 128, 128))
    with torch.inference_mode():
        before = ours(x)
    ours.load_state_dict(second.state_dict(), strict=True)
    with torch.inference_mode():
        expected, actual = _upstream_forward(second, x), ours(x)
    assert (before - expected).abs().max() > 1e-2
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4 * expected.abs().max().item())


def test_train_mode_matches_upstream_and_gives_gradients():
    # training mode normalises with batch statistics and keeps everything differentiable
    reference = _upstream_tiny_vit(128, seed=13)
    ours = _ours_like(reference, 128)
    reference.train(), ours.train()
    x = _inputs((2, 3, 128, 128))
    expected = _upstream_forward(reference, x)
    actual = ours(x)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4 * expected.abs().max().item())
    actual.square().mean().backward()
    assert ours.layers[2].blocks[0].attn.attention_biases.grad.abs().sum() > 0
    assert ours.layers[0].blocks[0].conv1.bn.weight.grad.abs().sum() > 0
    assert ours.head.weight.grad is None  # the head is not part of the encoder output


@pytest.mark.parametrize(
    "shape", [(1, 1, 256, 256), (1, 3, 250, 256), (3, 256, 256), (1, 4, 64, 64)]
)
def test_bad_input_raises_input_error(shape):
    with pytest.raises(InputError, match="TinyViT"):
        TinyViT(img_size=256).eval()(torch.zeros(shape))
