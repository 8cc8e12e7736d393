"""TinyViT image encoder of MobileSAM.

A convolutional stem (``/4``), a stage of inverted-residual conv blocks, three stages
of windowed self-attention blocks with a learned offset bias, joined by patch-merging
convs (``/2``, ``/2``, ``/1``), and a SAM neck: ``(B, 3, S, S) -> (B, 256, S/16, S/16)``.

Names are those of the official ``mobile_sam.pt`` (``patch_embed.seq.*``, ``layers.*``,
``norm_head``, ``head``, ``neck.*``), so its ``image_encoder.*`` entries load with
``strict=True``; the classification head is kept for that only and is not used.

Eval-mode inference folds BatchNorm into the convs lazily (the state dict keeps the
``c``/``bn`` entries), caches each block's gathered attention bias, uses
:func:`torch.nn.functional.scaled_dot_product_attention`, and keeps tokens as
``(B, H, W, C)``, which is also a channels-last image for the convs: no transposes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .common import LayerNorm2d
from .dense import Linear, linear

__all__ = ["TinyViT"]


def _needs_grad(tensors: Sequence[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _gelu_(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU, in place unless autograd needs ``x``.

    Fresh large CPU tensors cost page faults that take several times longer than the
    GELU itself, so reusing the input's memory is a large saving at inference.
    """
    if _needs_grad([x]):
        return F.gelu(x)
    return torch.ops.aten.gelu_(x)


class _CachedDerived(nn.Module):
    """Base for a module that derives a tensor from its parameters and caches it.

    The cache is keyed by the sources' storage and in-place version counters (so
    ``load_state_dict`` and in-place edits refresh it) and dropped by ``.to()`` & co.
    Nothing is cached while autograd needs the sources.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cached: tuple[tuple, object] | None = None

    def _derived(self, sources: Sequence[torch.Tensor], dtype: torch.dtype, compute):
        if _needs_grad(sources):
            return compute()
        key = (dtype,) + tuple((t.device, t.data_ptr(), t._version) for t in sources)
        if self._cached is None or self._cached[0] != key:
            with torch.no_grad():
                self._cached = (key, compute())
        return self._cached[1]

    def _apply(self, fn, recurse=True):  # .to(), .half(), ...
        self._cached = None
        return super()._apply(fn, recurse)


class ConvBN(_CachedDerived):
    """Bias-free ``Conv2d`` (``c``) followed by ``BatchNorm2d`` (``bn``), padding ``k // 2``.

    In eval mode the normalisation is folded into the convolution's weight and bias
    (computed lazily, cached until a parameter or buffer changes), so one convolution
    with bias replaces two passes over the output.
    """

    def __init__(
        self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chans)

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = self.c.weight * scale[:, None, None, None]
        return weight, bn.bias - bn.running_mean * scale

    def _folded_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.bn
        sources = (self.c.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        return self._derived(sources, self.c.weight.dtype, self._fold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, out_chans, H', W')``; keeps channels-last inputs so."""
        if self.training or self.bn.running_mean is None:
            return self.bn(self.c(x))
        weight, bias = self._folded_weight_bias()
        conv = self.c
        if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1:
            # a pointwise conv is a matmul over channels; on a channels-last image the
            # (B, H, W, C) view is free, and addmm beats the conv kernels on CPU
            tokens = linear(x.permute(0, 2, 3, 1), weight[:, :, 0, 0], bias)
            return tokens.permute(0, 3, 1, 2)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class _GELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _gelu_(x)


class Stem(nn.Module):
    """Two stride-2 3x3 ``ConvBN`` with GELU between: ``(B, in, S, S) -> (B, dim, S/4, S/4)``."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, stride=2),
            _GELU(),  # a module, as the checkpoint numbers the convs 0 and 2
            ConvBN(embed_dim // 2, embed_dim, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class InvertedResidual(nn.Module):
    """MBConv: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU after each step."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim, H, W) -> (B, dim, H, W)``."""
        y = self.conv3(_gelu_(self.conv2(_gelu_(self.conv1(x)))))
        y += x
        return _gelu_(y)


class PatchMerging(nn.Module):
    """1x1 conv, depthwise 3x3 conv (stride ``stride``), 1x1 conv, GELU after the first two."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim, H, W) -> (B, out_dim, H / stride, W / stride)`` (ceil)."""
        return self.conv3(_gelu_(self.conv2(_gelu_(self.conv1(x)))))


def _window_offset_index(window_size: int) -> torch.Tensor:
    """``(N, N)`` int64 column of ``attention_biases`` for each pair of window positions.

    Positions are row-major (``N = window_size**2``); a pair uses the column of its
    absolute offset, ``|dy| * window_size + |dx|``: the order in which offsets first
    occur when scanning pairs row-major, as the checkpoint's columns are laid out.
    """
    rows, cols = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    dy = (rows[:, None] - rows[None, :]).abs()
    dx = (cols[:, None] - cols[None, :]).abs()
    return dy * window_size + dx


class WindowAttention(_CachedDerived):
    """Pre-norm multi-head self-attention inside non-overlapping square windows.

    The token grid is padded at the bottom/right to whole windows with zero tokens (as
    the reference does); they take part as keys and values, their outputs are dropped.
    Each head adds a learned bias indexed by the absolute offset between two positions.
    The ``qkv`` output holds, per head, ``[q, k, v]`` of ``dim // num_heads`` each.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise InputError(
                f"embed dim {dim} is not divisible by {num_heads} heads; pick a divisor"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.norm = nn.LayerNorm(dim)
        self.qkv = Linear(dim, 3 * dim)
        self.proj = Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size**2))
        index = _window_offset_index(window_size)
        self.register_buffer("attention_bias_idxs", index, persistent=False)

    def _window_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """``(1, heads, N, N)`` additive attention mask (cached in eval).

        4-D on purpose: SDPA's CPU kernel is several times slower with a 3-D mask.
        """
        table = self.attention_biases
        gather = lambda: table[:, self.attention_bias_idxs].unsqueeze(0).to(dtype)  # noqa: E731
        return self._derived([table], dtype, gather)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``(B', N, dim)`` window tokens (``N = window_size**2``) -> ``(B', N, dim)``."""
        count, tokens, dim = windows.shape
        qkv = self.qkv(self.norm(windows)).view(count, tokens, self.num_heads, 3, self.head_dim)
        query, key, value = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # (B', heads, N, head_dim)
        out = F.scaled_dot_product_attention(query, key, value, self._window_bias(query.dtype))
        # SDPA's CPU/CUDA kernels lay the output out as (B', N, heads, d): a free view
        return self.proj(out.transpose(1, 2).reshape(count, tokens, dim))


def _partition_windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * nH * nW, size * size, C)`` windows, row-major.

    The grid is zero-padded at the bottom and right to whole windows first.
    """
    batch, height, width, dim = x.shape
    pad_h, pad_w = -height % size, -width % size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    rows, cols = (height + pad_h) // size, (width + pad_w) // size
    windows = x.view(batch, rows, size, cols, size, dim).transpose(2, 3)
    return windows.reshape(batch * rows * cols, size * size, dim)


def _merge_windows(windows: torch.Tensor, height: int, width: int, size: int) -> torch.Tensor:
    """Inverse of :func:`_partition_windows`: ``-> (B, height, width, C)`` (a cropped view)."""
    rows, cols = -(-height // size), -(-width // size)
    dim = windows.shape[-1]
    grid = windows.view(-1, rows, cols, size, size, dim).transpose(2, 3)
    return grid.reshape(-1, rows * size, cols * size, dim)[:, :height, :width]


class FeedForward(nn.Module):
    """Pre-norm two-layer perceptron: ``fc2(gelu(fc1(norm(x))))`` on the last axis."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = Linear(dim, hidden_dim)
        self.fc2 = Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(_gelu_(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention, depthwise ``local_conv``, MLP; residuals around attention and MLP."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int
    ) -> None:
        super().__init__()
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, local_conv_size, groups=dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, dim, H, W) -> (B, dim, H, W)``, channels-last in and out."""
        # a channels-last image's memory is the (B, H, W, C) token grid: free views
        x = image.permute(0, 2, 3, 1).contiguous()
        size = self.attn.window_size
        windows = self.attn(_partition_windows(x, size))
        attended = torch.add(x, _merge_windows(windows, x.shape[1], x.shape[2], size))
        x = self.local_conv(attended.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
        out = self.mlp(x)
        out += x
        return out.permute(0, 3, 1, 2)


class Stage(nn.Module):
    """Blocks, then an optional patch merging, on channels-last ``(B, C, H, W)`` images."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """MobileSAM's TinyViT image encoder with a SAM neck.

    Parameters
    ----------
    img_size
        Side ``S`` the model is built for (1024); ``forward`` takes any multiple of 16.
    in_chans, out_chans
        Input channels; channels of the output embedding.
    embed_dims, depths, num_heads, window_sizes
        Width, blocks, attention heads and window side of each of the four stages
        (heads and window of stage 0, which is convolutional, are unused).
    mlp_ratio
        MLP hidden width as a multiple of the stage width.
    num_classes, mbconv_expand_ratio, local_conv_size
        Outputs of the unused classification head (1000 in the checkpoint); hidden-width
        ratio of the stage-0 blocks; kernel of the attention blocks' depthwise conv.
    """

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        *,
        num_classes: int = 1000,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
    ) -> None:
        super().__init__()
        if not len(embed_dims) == len(depths) == len(num_heads) == len(window_sizes) == 4:
            raise InputError(
                "TinyViT needs four stages: give embed_dims, depths, num_heads and "
                "window_sizes four entries each"
            )
        if img_size % 16:
            raise InputError(f"img_size {img_size} is not a multiple of 16; pick one that is")
        self.img_size = img_size
        self.in_chans = in_chans
        self.patch_embed = Stem(in_chans, embed_dims[0])
        # merges after stages 0 and 1 halve the grid; the one into the last stage keeps it
        strides = (2, 2, 1)
        self.layers = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(embed_dims, depths)):
            if i == 0:
                blocks = [InvertedResidual(dim, mbconv_expand_ratio) for _ in range(depth)]
            else:
                block_args = (num_heads[i], window_sizes[i], mlp_ratio, local_conv_size)
                blocks = [TinyViTBlock(dim, *block_args) for _ in range(depth)]
            merge = PatchMerging(dim, embed_dims[i + 1], strides[i]) if i < 3 else None
            self.layers.append(Stage(blocks, merge))
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise InputError(
                f"TinyViT expects a (B, {self.in_chans}, S, S) batch, got shape {tuple(x.shape)}"
            )
        if x.shape[2] % 16 or x.shape[3] % 16:
            raise InputError(
                f"TinyViT input sides {tuple(x.shape[2:])} must be multiples of 16; "
                f"pad the image to {self.img_size} x {self.img_size}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a normalised batch.

        Parameters
        ----------
        x
            ``(B, in_chans, S, S)`` float, normalised and padded (``S = img_size``).

        Returns
        -------
        torch.Tensor
            ``(B, out_chans, S / 16, S / 16)`` embedding, contiguous, ``x``'s float dtype
            (or the autocast dtype).
        """
        self._check_input(x)
        # channels-last throughout: the convs prefer it and it is the attention token layout
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        for stage in self.layers:
            x = stage(x)
        return self.neck(x).contiguous()
