"""SAM's ViT image encoder: exact to the official model, faster on CPU.

Architecture (Kirillov et al. 2023, "Segment Anything", sec. 3 and appendix A; the
backbone is ViTDet's plain ViT, Li et al. 2022), with the names of the official
checkpoint keys:

- ``patch_embed.proj``: a 16x16, stride-16 convolution turns the normalised
  ``(B, 3, S, S)`` image into ``(B, S/16, S/16, D)`` tokens (channels last);
  ``pos_embed`` ``(1, S/16, S/16, D)`` is added (absolute position).
- ``blocks.{i}``: pre-norm transformer blocks ``x += proj(attn(norm1(x)));
  x += mlp(norm2(x))`` with ``attn.qkv`` (one fused ``D -> 3D`` linear), ``attn.proj``,
  ``mlp.lin1``/``mlp.lin2`` (GELU, hidden ``4D``), LayerNorms with eps 1e-6.
  Most blocks attend inside non-overlapping 14x14 windows (the token grid is
  zero-padded *after* ``norm1`` to a multiple of 14, and padded tokens take part as
  keys); the blocks in ``global_attn_indexes`` attend over the whole grid.
- every attention adds MViTv2's *decomposed relative position* bias: for a query at
  row/column ``(i, j)`` and a key at ``(k, l)``,
  ``bias = q . rel_pos_h[i - k + h - 1] + q . rel_pos_w[j - l + w - 1]`` (``q``
  unscaled; tables ``attn.rel_pos_h``/``attn.rel_pos_w`` of shape ``(2 size - 1,
  head_dim)``, size 14 for windowed blocks, ``S/16`` for global ones); the logits are
  ``q . k / sqrt(head_dim) + bias``.
- ``neck``: 1x1 conv ``D -> 256``, LayerNorm2d, 3x3 conv, LayerNorm2d, giving the
  ``(B, 256, S/16, S/16)`` image embedding.

ViT-B/L/H differ only in ``embed_dim``/``depth``/``num_heads``/``global_attn_indexes``
(768/12/12/(2,5,8,11), 1024/24/16/(5,11,17,23), 1280/32/16/(7,15,23,31)).

Speed (same arithmetic, same results up to float rounding):

- **No full attention matrix on CPU.** Upstream builds ``(B*heads, 4096, 4096)``
  logits per global block at 1024x1024 (800 MB in fp32), then adds both bias terms
  and takes a softmax, each a new tensor that size. We take the queries a few token
  rows at a time (all heads together) into one reused buffer of at most
  ``vit_attention.SCORE_BUDGET`` elements: ``buffer = bias_h + bias_w`` (broadcast add
  of the small decomposed terms), ``buffer += scale * q @ k^T`` (``baddbmm_``: the GEMM accumulates
  onto the bias), softmax in place, ``out[rows] = buffer @ v``. (The CPU kernel of
  ``scaled_dot_product_attention`` with a float mask measured 2-4x slower than this,
  and no faster in bf16.)
- **Bias folded into the GEMM where cheap.** If ``h + w <= head_dim`` (windowed
  blocks, global blocks of small inputs), ``q`` is extended by its ``h + w`` bias terms
  and ``k`` by one-hot row/column indicators: one ``bmm`` gives ``scale q.k + bias``.
- **Fewer copies.** Patch embedding is a reshape plus one linear, so the residual
  stream is contiguous channels-last from the start (upstream's stays in the conv's
  channels-first layout, and every LayerNorm copies it); q/k/v are split with one
  copy; windowed blocks run ``qkv`` on the unpadded grid and fill the padding with the
  ``qkv`` bias (what a zero token gives), and ``proj`` on the cropped grid (16% fewer
  rows at 1024).
- **bf16.** Run the encoder inside ``torch.autocast(device_type, dtype=torch.bfloat16)``
  (:func:`bf16_autocast`): linears and attention GEMMs use bf16 (``avx512_bf16``/AMX
  CPUs, GPUs), while the residual stream, LayerNorms and output stay fp32. The
  attention follows the dtype ``qkv`` comes out in; no separate code path.

Off CPU (CUDA, MPS), and when autograd records, attention is
:func:`torch.nn.functional.scaled_dot_product_attention` with the bias materialised
as ``attn_mask`` (fused kernels there; differentiable).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .common import LayerNorm2d, MLPBlock
from .dense import Linear, linear
from .vit_attention import chunked_attention, decomposed_rel_pos, fused_attention

__all__ = ["ImageEncoderViT", "bf16_autocast"]


def bf16_autocast(device: torch.device | str) -> torch.autocast:
    """Context manager that runs the encoder's heavy math in bfloat16 on ``device``.

    Usage: ``with torch.inference_mode(), bf16_autocast(x.device): y = encoder(x)``.
    The output stays float32.
    """
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


class Attention(nn.Module):
    """Multi-head self-attention with decomposed relative positions on a token grid.

    Parameters
    ----------
    dim
        Token width ``C``.
    num_heads
        Heads; ``head_dim = C // num_heads``.
    input_size
        ``(h, w)`` of the grid it attends over (window or whole grid); sizes the
        ``rel_pos_h``/``rel_pos_w`` tables ``(2h - 1, head_dim)``/``(2w - 1, head_dim)``.
    """

    def __init__(self, dim: int, num_heads: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = Linear(dim, dim * 3)
        self.proj = Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw: tuple[int, int]
    ) -> torch.Tensor:
        """Attention of ``(N, h*w, head_dim)`` queries/keys/values of ``h x w`` grids.

        ``N`` = batch x heads (x windows). Returns ``(N, h*w, head_dim)``, before
        ``self.proj``.
        """
        bias_h, bias_w = decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, hw)
        needs_grad = torch.is_grad_enabled() and q.requires_grad
        if q.device.type == "cpu" and not needs_grad:
            return chunked_attention(q, k, v, bias_h, bias_w, self.scale)
        return fused_attention(q, k, v, bias_h, bias_w, self.scale)


def split_heads(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, H, W, 3C)`` -> contiguous ``(3, B * heads, H * W, C / heads)`` q, k, v."""
    b, h, w, c3 = qkv.shape
    qkv = qkv.reshape(b, h * w, 3, heads, c3 // (3 * heads)).permute(2, 0, 3, 1, 4)
    return qkv.reshape(3, b * heads, h * w, -1).contiguous()


def merge_heads(out: torch.Tensor, b: int, hw: tuple[int, int]) -> torch.Tensor:
    """``(B * heads, H * W, d)`` -> ``(B, H, W, heads * d)``."""
    n, _, d = out.shape
    return out.view(b, n // b, hw[0], hw[1], d).permute(0, 2, 3, 1, 4).reshape(b, *hw, -1)


def window_partition(
    qkv: torch.Tensor, window: int, heads: int, pad_value: torch.Tensor
) -> torch.Tensor:
    """``(B, H, W, 3C)`` -> ``(3, B * nh * nw * heads, window**2, C / heads)`` q, k, v.

    Windows in row-major order, each split into heads, in one copy. The grid is padded
    at the bottom/right to a multiple of ``window`` with ``pad_value`` ``(3C,)``.
    """
    b, h, w, c3 = qkv.shape
    hp, wp = h + (-h % window), w + (-w % window)
    if (hp, wp) != (h, w):
        padded = qkv.new_empty(b, hp, wp, c3)
        padded[:, :h, :w] = qkv
        padded[:, h:] = pad_value
        padded[:, :h, w:] = pad_value
        qkv = padded
    nh, nw = hp // window, wp // window
    grid = qkv.view(b, nh, window, nw, window, 3, heads, c3 // (3 * heads))
    # -> (3, b, nh, nw, heads, window, window, d)
    windows = grid.permute(5, 0, 1, 3, 6, 2, 4, 7)
    return windows.reshape(3, b * nh * nw * heads, window * window, -1)


def window_unpartition(out: torch.Tensor, window: int, b: int, hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition` for ``(B * nh * nw * heads, window**2, d)``.

    Returns the contiguous ``(B, H, W, heads * d)`` grid with the padding cropped.
    """
    h, w = hw
    hp, wp = h + (-h % window), w + (-w % window)
    nh, nw = hp // window, wp // window
    d = out.shape[-1]
    grid = out.view(b, nh, nw, -1, window, window, d).permute(0, 1, 4, 2, 5, 3, 6)
    grid = grid.reshape(b, hp, wp, -1)
    return grid[:, :h, :w].contiguous() if (hp, wp) != (h, w) else grid


class Block(nn.Module):
    """Pre-norm transformer block on a ``(B, H, W, C)`` grid, windowed if ``window_size``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        window_size: int,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim, num_heads, input_size if window_size == 0 else (window_size, window_size)
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))
        self.window_size = window_size

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        heads, window = self.attn.num_heads, self.window_size
        qkv = self.attn.qkv(self.norm1(x))
        if window == 0:
            q, k, v = split_heads(qkv, heads)
            del qkv
            y = merge_heads(self.attn.attend(q, k, v, (h, w)), b, (h, w))
        else:
            # qkv of a zero (padding) token is the qkv bias, in the dtype qkv came out in.
            q, k, v = window_partition(qkv, window, heads, self.attn.qkv.bias.to(qkv.dtype))
            del qkv
            y = window_unpartition(self.attn.attend(q, k, v, (window, window)), window, b, (h, w))
        return self.attn.proj(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        x = x + self._attention(x)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` patches -> ``(B, H/p, W/p, D)`` tokens."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> contiguous ``(B, H/p, W/p, D)``."""
        b, c, h, w = x.shape
        p = self.proj.kernel_size[0]
        # The stride-p conv equals one linear on flattened patches (c, dy, dx order),
        # and yields channels-last tokens without a permute copy.
        patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(b, h // p, w // p, c * p * p)
        return linear(patches, self.proj.weight.flatten(1), self.proj.bias)


class ImageEncoderViT(nn.Module):
    """SAM's ViT image encoder (see the module docstring).

    Parameters
    ----------
    img_size
        Side ``S`` of the square input; fixes ``pos_embed`` and the global blocks'
        relative-position tables.
    patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, out_chans
        ViT hyper-parameters (SAM ViT-B defaults).
    window_size
        Side of the attention windows of the non-global blocks.
    global_attn_indexes
        Indexes of the blocks that attend over the whole grid.
    """

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        window_size: int = 14,
        global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.in_chans = in_chans
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio,
                0 if i in global_attn_indexes else window_size,
                (grid, grid),
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image embedding.

        Parameters
        ----------
        x
            ``(B, in_chans, img_size, img_size)`` float, normalised and padded.

        Returns
        -------
        torch.Tensor
            ``(B, out_chans, img_size / 16, img_size / 16)``, contiguous; float32 under
            bf16 autocast.
        """
        expected = (self.in_chans, self.img_size, self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise InputError(
                f"image encoder expects a (B, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"tensor, got {tuple(x.shape)}: resize and pad the image to the model size"
            )
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self._neck(x)

    def _neck(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, D)`` channels-last tokens -> ``(B, out_chans, H, W)``."""
        conv1, norm1, conv2, norm2 = self.neck
        # LayerNorms in the parameters' precision (float32 under autocast, where the
        # convs come out in bfloat16): the embedding keeps full precision.
        dtype = torch.promote_types(x.dtype, norm1.weight.dtype)
        # The 1x1 conv and first LayerNorm2d act per token: one linear + layer_norm.
        y = linear(x, conv1.weight.flatten(1)).to(dtype)
        y = F.layer_norm(y, (y.shape[-1],), norm1.weight, norm1.bias, norm1.eps)
        y = conv2(y.permute(0, 3, 1, 2)).to(dtype)
        return norm2(y).contiguous()
