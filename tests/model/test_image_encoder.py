"""Our SAM ViT image encoder against upstream segment-anything's, on random weights.

Every parameter, the zero-initialised ``pos_embed`` and relative-position tables
included, is random (``upstream.randomize_``), so a wrong key, head split, bias index
or padding rule shows up as a numeric mismatch. Upstream's state dict is loaded into
ours with ``strict=True``.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from tests.oracle import upstream

from napari_segany.core.errors import InputError
from napari_segany.core.model import vit_attention
from napari_segany.core.model.common import LayerNorm2d, MLPBlock
from napari_segany.core.model.image_encoder import ImageEncoderViT, bf16_autocast
from napari_segany.core.model.vit_attention import (
    chunked_attention,
    decomposed_rel_pos,
    fused_attention,
)

# embed_dim, depth, num_heads, global_attn_indexes of the official models
ARCHS = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


def _kwargs(arch: str, img_size: int) -> dict:
    dim, depth, heads, global_idx = ARCHS[arch]
    return dict(
        img_size=img_size,
        patch_size=16,
        in_chans=3,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4.0,
        out_chans=256,
        window_size=14,
        global_attn_indexes=global_idx,
    )


def _upstream_encoder(arch: str, img_size: int, seed: int = 0, meta: bool = False):
    """Upstream encoder with SAM's settings (as ``build_sam`` makes it), random weights."""
    cls = upstream.segment_anything.modeling.ImageEncoderViT
    build = partial(
        cls,
        **_kwargs(arch, img_size),
        qkv_bias=True,
        use_rel_pos=True,
        rel_pos_zero_init=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    )
    with torch.device("meta"):
        model = build()  # meta first: skips upstream's slow init of weights we overwrite
    if meta:
        return model
    return upstream.randomize_(model.to_empty(device="cpu"), seed=seed)


def _pair(arch: str, img_size: int, seed: int = 0):
    """(upstream, ours) with ours sharing upstream's random weights (strict load)."""
    reference = _upstream_encoder(arch, img_size, seed)
    with torch.device("meta"):
        ours = ImageEncoderViT(**_kwargs(arch, img_size))
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    return reference, ours.eval()


def _image(img_size: int, batch: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed))


def _assert_close(ours: torch.Tensor, reference: torch.Tensor, rel: float = 1e-4) -> None:
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    scale = reference.abs().max().item()
    err = (ours - reference).abs().max().item()
    assert err <= rel * scale, f"max abs diff {err:.3g} vs output scale {scale:.3g}"


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_state_dict_keys_and_shapes_match_upstream(arch):
    reference = _upstream_encoder(arch, 1024, meta=True)
    with torch.device("meta"):
        ours = ImageEncoderViT(**_kwargs(arch, 1024))
    ref_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert our_shapes == ref_shapes
    grid = 1024 // 16
    head_dim = ARCHS[arch][0] // ARCHS[arch][2]
    assert our_shapes["pos_embed"] == (1, grid, grid, ARCHS[arch][0])
    assert our_shapes["blocks.0.attn.rel_pos_h"] == (2 * 14 - 1, head_dim)
    global_block = ARCHS[arch][3][0]
    assert our_shapes[f"blocks.{global_block}.attn.rel_pos_w"] == (2 * grid - 1, head_dim)


@pytest.fixture(scope="module")
def vit_b_256():
    """(upstream, ours) ViT-B at 256x256: 16x16 tokens, so windowed blocks pad to 28x28
    (2x2 windows) and global blocks attend over 16x16 (bias folded into the GEMM)."""
    return _pair("vit_b", 256)


def test_vit_b_matches_upstream_at_256(vit_b_256):
    reference, ours = vit_b_256
    x = _image(256, batch=2)
    with torch.inference_mode():
        expected = reference(x)
        got = ours(x)
    assert got.shape == (2, 256, 16, 16) and got.is_contiguous()
    _assert_close(got, expected)


@pytest.mark.slow
def test_vit_b_matches_upstream_at_512():
    # 32x32 tokens: windows pad to 42x42, global blocks have h + w == head_dim
    reference, ours = _pair("vit_b", 512, seed=3)
    x = _image(512, seed=4)
    with torch.inference_mode():
        _assert_close(ours(x), reference(x))


@pytest.mark.slow
def test_vit_b_matches_upstream_at_1024():
    # the real size: 64x64 tokens, 5x5 padded windows, chunked global attention
    reference, ours = _pair("vit_b", 1024, seed=5)
    x = _image(1024, seed=6)
    with torch.inference_mode():
        _assert_close(ours(x), reference(x))


@pytest.mark.parametrize(("arch", "img_size"), [("vit_l", 256), ("vit_h", 128)])
def test_large_architectures_match_upstream(arch, img_size):
    # real width, heads and depth; reduced image size to keep the test quick
    reference, ours = _pair(arch, img_size, seed=7)
    x = _image(img_size, seed=8)
    with torch.inference_mode():
        _assert_close(ours(x), reference(x))


def test_grad_path_matches_upstream_and_backpropagates():
    # with autograd recording, attention goes through scaled_dot_product_attention
    # (the path CUDA/MPS use): same numbers, and gradients reach every parameter
    reference, ours = _pair("vit_b", 256, seed=9)  # own copy: backward fills .grad
    x = _image(256, seed=10)
    with torch.inference_mode():
        expected = reference(x)
    got = ours(x)
    _assert_close(got.detach(), expected)
    got.square().mean().backward()
    assert all(p.grad is not None for p in ours.parameters())


def test_bf16_autocast_is_close_to_fp32(vit_b_256):
    reference, ours = vit_b_256
    x = _image(256, seed=12)
    with torch.inference_mode():
        fp32 = reference(x)
        with bf16_autocast("cpu"):
            bf16 = ours(x)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    cosine = torch.nn.functional.cosine_similarity(bf16.flatten(), fp32.flatten(), dim=0)
    assert cosine > 0.99
    assert torch.isfinite(bf16).all()


def _naive_attention(q, k, v, bias_h, bias_w, scale):
    n, length, _ = q.shape
    bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(n, length, length)
    return torch.softmax(scale * q @ k.transpose(1, 2) + bias, -1) @ v


@pytest.mark.parametrize("head_dim", [8, 32])  # h + w = 22: bias added, resp. folded
@pytest.mark.parametrize("budget", [1 << 30, 30000, 2500])  # one chunk; rows; batches
def test_chunked_attention_matches_naive(monkeypatch, head_dim, budget):
    monkeypatch.setattr(vit_attention, "SCORE_BUDGET", budget)
    gen = torch.Generator().manual_seed(0)
    n, h, w = 5, 12, 10
    q, k, v = (torch.randn(n, h * w, head_dim, generator=gen) for _ in range(3))
    rel_h = torch.randn(2 * h - 1, head_dim, generator=gen)
    rel_w = torch.randn(2 * w - 1, head_dim, generator=gen)
    bias_h, bias_w = decomposed_rel_pos(q, rel_h, rel_w, (h, w))
    expected = _naive_attention(q, k, v, bias_h, bias_w, 0.3)
    torch.testing.assert_close(chunked_attention(q, k, v, bias_h, bias_w, 0.3), expected)
    torch.testing.assert_close(fused_attention(q, k, v, bias_h, bias_w, 0.3), expected)


def test_decomposed_rel_pos_matches_definition():
    gen = torch.Generator().manual_seed(1)
    h, w, d = 3, 4, 5
    q = torch.randn(2, h * w, d, generator=gen)
    rel_h = torch.randn(2 * h - 1, d, generator=gen)
    rel_w = torch.randn(2 * w - 1, d, generator=gen)
    bias_h, bias_w = decomposed_rel_pos(q, rel_h, rel_w, (h, w))
    grid = q.view(2, h, w, d)
    for i, j, kk, ll in [(0, 0, 2, 3), (2, 1, 0, 0), (1, 3, 1, 2)]:
        torch.testing.assert_close(bias_h[:, i, j, kk], grid[:, i, j] @ rel_h[i - kk + h - 1])
        torch.testing.assert_close(bias_w[:, i, j, ll], grid[:, i, j] @ rel_w[j - ll + w - 1])


def test_wrong_input_shape_raises():
    encoder = ImageEncoderViT(
        img_size=64, embed_dim=32, depth=1, num_heads=2, global_attn_indexes=(0,)
    )
    with pytest.raises(InputError, match=r"\(B, 3, 64, 64\)"):
        encoder(torch.zeros(1, 3, 48, 64))
    with pytest.raises(InputError):
        encoder(torch.zeros(3, 64, 64))


def test_common_layers_match_upstream():
    from segment_anything.modeling import common

    gen = torch.Generator().manual_seed(2)
    ours, reference = LayerNorm2d(8), common.LayerNorm2d(8)
    upstream.randomize_(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 8, 5, 6, generator=gen) * 3 + 1
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    assert ours(x).is_contiguous()  # callers may .view() it, as upstream's allows

    ours_mlp, reference_mlp = MLPBlock(8, 32), common.MLPBlock(8, 32)
    upstream.randomize_(reference_mlp)
    ours_mlp.load_state_dict(reference_mlp.state_dict(), strict=True)
    y = torch.randn(3, 4, 8, generator=gen)
    torch.testing.assert_close(ours_mlp(y), reference_mlp(y))
