"""SAM 2.1's image trunk: Hiera, a hierarchical ViT with windowed attention.

Four stages at strides 4, 8, 16 and 32 of the input. The first block of stages 2-4
halves the map: its queries are max-pooled 2 x 2 inside each window (keys and values
are not), its width and heads double and its shortcut is projected and pooled the
same way. Blocks attend within square windows (a per-stage size, zero-padded at the
map's bottom and right edges) except the few listed as global. The position
embedding is a bicubic enlargement of a small "background" grid plus one window-sized
embedding tiled over the map. Parameter names are those of the official SAM 2.1
checkpoints (``image_encoder.trunk.*``), so a state dict loads unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dense import Linear, attention
from .hiera_stem import PatchEmbed, PositionRows, embed_by_bands

__all__ = ["HIERA_SPECS", "Hiera", "HieraSpec"]

# Token rows per piece of the MLP without autograd: its hidden activations (rows x 4 C
# float32) up to 4 MiB, 256 to 2048 rows (measured: the same speed from 512 rows up;
# 2048 rows of SAM 2.1-B+'s last stages were 15-29 MiB of temporaries).
_MLP_HIDDEN_BYTES = 4 << 20
_MLP_ROW_RANGE = (256, 2048)


@dataclass(frozen=True)
class HieraSpec:
    """One Hiera size (the fields of the official model configs).

    Attributes
    ----------
    embed_dim, num_heads : int
        Width and heads of stage 1 (both double at each later stage).
    stages : tuple of int
        Blocks per stage.
    global_att_blocks : tuple of int
        Blocks (0-based, over all stages) that attend over the whole map.
    window_spec : tuple of int
        Window side per stage (the first block of a stage still uses the previous
        stage's, on the map before pooling).
    background_hw : tuple of int
        Side of the position embedding grid enlarged to the map
        (``window_pos_embed_bkg_spatial_size``).
    """

    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    background_hw: tuple[int, int] = (14, 14)


HIERA_SPECS = {
    "tiny": HieraSpec(96, 1, (1, 2, 7, 2), (5, 7, 9), background_hw=(7, 7)),
    "small": HieraSpec(96, 1, (1, 2, 11, 2), (7, 10, 13), background_hw=(7, 7)),
    "base_plus": HieraSpec(112, 2, (2, 3, 16, 3), (12, 16, 20)),
    "large": HieraSpec(144, 2, (2, 6, 36, 4), (23, 33, 43), (8, 4, 16, 8), (7, 7)),
}


def _identity(tensor: Tensor) -> tuple:
    """What identifies a parameter's current values: storage, version, dtype, device."""
    version = -1 if tensor.is_inference() else tensor._version
    return (tensor.data_ptr(), version, tensor.dtype, tensor.device)


def _pool_2x2(x: Tensor) -> Tensor:
    """2 x 2 max pooling (stride 2, odd edges dropped) of a (B, H, W, C) map."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), 2, 2).permute(0, 2, 3, 1)


def _windows(x: Tensor, side: int) -> tuple[Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * windows, side, side, C), zero-padded at the bottom and right
    to multiples of ``side``; also the padded (H, W)."""
    count, height, width, channels = x.shape
    padded_h, padded_w = -(-height // side) * side, -(-width // side) * side
    if (padded_h, padded_w) != (height, width):
        x = F.pad(x, (0, 0, 0, padded_w - width, 0, padded_h - height))
    x = x.view(count, padded_h // side, side, padded_w // side, side, channels)
    # contiguous: with one row of windows the reshape is a strided view, which linear
    # layers under autocast turn into a batched matmul copying the weight per window row
    windows = x.transpose(2, 3).reshape(-1, side, side, channels).contiguous()
    return windows, (padded_h, padded_w)


def _unwindow(windows: Tensor, padded_hw: tuple[int, int], hw: tuple[int, int]) -> Tensor:
    """Inverse of :func:`_windows`: (B * windows, side, side, C) -> (B, H, W, C)."""
    side, channels = windows.shape[1], windows.shape[-1]
    rows, cols = padded_hw[0] // side, padded_hw[1] // side
    x = windows.view(-1, rows, cols, side, side, channels).transpose(2, 3)
    x = x.reshape(-1, padded_hw[0], padded_hw[1], channels)
    return x[:, : hw[0], : hw[1]]


class HieraAttention(nn.Module):
    """Multi-head attention over the tokens of each (B, H, W, C) window, the queries
    optionally max-pooled 2 x 2 first (``pool_queries``)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, pool_queries: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.pool_queries = pool_queries
        self.qkv = Linear(dim, 3 * dim_out)
        self.proj = Linear(dim_out, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H', W', C_out); (H', W') = (H, W) // 2 when pooling."""
        count, height, width, _ = x.shape
        qkv = self.qkv(x).view(count, height, width, 3, -1)
        query, key, value = qkv.unbind(3)
        if self.pool_queries:
            query = _pool_2x2(query)
        out_h, out_w = query.shape[1:3]

        def by_head(tokens: Tensor) -> Tensor:  # (B, h, w, C) -> (B, h w, heads, d)
            return tokens.reshape(count, -1, self.num_heads, tokens.shape[-1] // self.num_heads)

        query, key, value = (by_head(t).transpose(1, 2) for t in (query, key, value))
        attended = attention(query, key, value).transpose(1, 2)
        del qkv, query, key, value  # q/k/v (3 maps) freed before the projection
        return self.proj(attended.reshape(count, out_h, out_w, -1))


class HieraMLP(nn.Module):
    """``layers[1](GELU(layers[0](x)))`` on the last axis."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Linear(dim, hidden), Linear(hidden, dim)])

    def forward(self, x: Tensor) -> Tensor:
        """(..., dim) -> (..., dim)."""
        return self.layers[1](F.gelu(self.layers[0](x)))

    def add_residual_(self, x: Tensor, norm: nn.LayerNorm) -> Tensor:
        """``x += forward(norm(x))`` in place, a block of rows at a time (no
        autograd): the hidden activations of a block of rows stay small and their
        memory is reused, instead of one (tokens, 4 C) tensor of fresh pages."""
        flat = x.view(-1, x.shape[-1])
        first, second = self.layers
        step = _MLP_HIDDEN_BYTES // (4 * first.out_features)
        step = min(max(step, _MLP_ROW_RANGE[0]), _MLP_ROW_RANGE[1])
        for start in range(0, flat.shape[0], step):
            rows = flat[start : start + step]
            hidden = torch.ops.aten.gelu_(first(norm(rows)))
            rows.add_(second(hidden))
        return x


class HieraBlock(nn.Module):
    """Pre-norm attention (windowed when ``window`` > 0) and MLP, on (B, H, W, C).

    Parameters
    ----------
    dim, dim_out : int
        Input and output widths (they differ only at a stage's first block, which
        also pools: ``pool`` True).
    num_heads : int
    window : int
        Window side; 0 for global attention.
    pool : bool
        Halve the map (queries and shortcut max-pooled 2 x 2).
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, window: int, pool: bool) -> None:
        super().__init__()
        self.window, self.pool = window, pool
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = HieraAttention(dim, dim_out, num_heads, pool)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = HieraMLP(dim_out, 4 * dim_out)
        if dim != dim_out:
            self.proj = Linear(dim, dim_out)

    def forward(self, x: Tensor, overwrite: bool = False) -> Tensor:
        """(B, H, W, C) -> (B, H', W', C_out). With ``overwrite`` (no autograd) a block
        that keeps the map's size and width writes its result into ``x`` (one map less
        of memory: 29 MiB at SAM 2.1-B+'s first stage)."""
        if not torch.is_grad_enabled():
            into = x if overwrite and not self.pool and not hasattr(self, "proj") else None
            x = self._attend_by_bands(x, into) if self.window else self._attend(x, into)
            return self.mlp.add_residual_(x, self.norm2)
        x = self._attend(x)
        return x + self.mlp(self.norm2(x))

    def _attend(self, x: Tensor, into: Tensor | None = None) -> Tensor:
        """``shortcut + attention(norm1(x))`` of a whole (B, H, W, C) map (added to
        ``into``, which is ``x``, when given)."""
        normed = self.norm1(x)
        if into is not None and not self.window:
            return into.add_(self.attn(normed))
        shortcut = self._shortcut(x, normed)
        if self.window:
            attended = self.attn(_windows(normed, self.window)[0])
            out_hw = shortcut.shape[1:3]
            side = attended.shape[1]  # the window side after pooling
            padded = tuple(-(-size // side) * side for size in out_hw)
            attended = _unwindow(attended, padded, out_hw)
        else:
            attended = self.attn(normed)
        return shortcut + attended

    def _shortcut(self, x: Tensor, normed: Tensor) -> Tensor:
        """The residual branch: ``x``, or ``normed`` projected to the new width; pooled
        2 x 2 at a stage's first block."""
        shortcut = self.proj(normed) if hasattr(self, "proj") else x
        return _pool_2x2(shortcut) if self.pool else shortcut

    def _attend_by_bands(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """:meth:`_attend` of a windowed block one band of window rows at a time (no
        autograd): windows never cross bands, so each band's norm, q/k/v, attention and
        shortcut are those of the whole map, while its temporaries stay small and are
        reused (the first stages hold 65536 tokens; whole-map q/k/v are 75-150 MB of
        fresh pages). Bands are padded at the bottom as the whole map is. ``out`` may
        be ``x`` itself: a band's result depends on that band alone."""
        count, height, width, _ = x.shape
        side = self.window
        out_h, out_w = (height // 2, width // 2) if self.pool else (height, width)
        if out is None:
            out = x.new_empty(count, out_h, out_w, self.attn.proj.out_features)
        for top in range(0, height, side):
            band = x[:, top : top + side]
            normed = self.norm1(band)
            shortcut = self._shortcut(band, normed)
            attended = self.attn(_windows(normed, side)[0])
            rows, out_side = shortcut.shape[1], attended.shape[1]
            padded_w = -(-out_w // out_side) * out_side
            attended = _unwindow(attended, (out_side, padded_w), (rows, out_w))
            first = top // 2 if self.pool else top
            torch.add(shortcut, attended, out=out[:, first : first + rows])
        return out


class Hiera(nn.Module):
    """The Hiera trunk: an image -> one feature map per stage.

    Parameters
    ----------
    spec : HieraSpec
        The size (:data:`HIERA_SPECS`).
    """

    def __init__(self, spec: HieraSpec) -> None:
        super().__init__()
        self.spec = spec
        self.patch_embed = PatchEmbed(spec.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, spec.embed_dim, *spec.background_hw))
        window = spec.window_spec[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, spec.embed_dim, window, window))
        stage_ends = [sum(spec.stages[: index + 1]) - 1 for index in range(len(spec.stages))]
        self.stage_ends = stage_ends
        dim, heads, stage = spec.embed_dim, spec.num_heads, 0
        blocks = []
        for index in range(sum(spec.stages)):
            dim_out, window = dim, spec.window_spec[stage]  # a stage's first block lags
            starts_stage = index - 1 in stage_ends
            if starts_stage:
                dim_out, heads, stage = 2 * dim, 2 * heads, stage + 1
            if index in spec.global_att_blocks:
                window = 0
            blocks.append(HieraBlock(dim, dim_out, heads, window, starts_stage))
            dim = dim_out
        self.blocks = nn.ModuleList(blocks)
        self.channels = [self.blocks[end].attn.proj.out_features for end in stage_ends]
        self._position_cache: tuple[tuple, PositionRows | None] = ((), None)

    def position_embedding(self, hw: tuple[int, int]) -> Tensor:
        """(1, H, W, C) position embedding of an (H, W) stage-1 map (sides multiples of
        the first window)."""
        window = self.pos_embed_window
        background = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        tiles = (hw[0] // window.shape[-2], hw[1] // window.shape[-1])
        return (background + window.tile(1, 1, *tiles)).permute(0, 2, 3, 1)

    def position_rows(self, hw: tuple[int, int]) -> PositionRows:
        """:meth:`position_embedding` by bands of rows (no autograd). The last one is
        kept while the map size and the two parameters (data and version) stay the same:
        it depends on nothing else (its interpolation matrices and the background
        enlarged across, 1.6 MiB for SAM 2.1-B+, instead of the 18-24 ms enlargement
        of every image)."""
        inputs = (tuple(hw), *(_identity(p) for p in (self.pos_embed, self.pos_embed_window)))
        if self._position_cache[0] != inputs:
            self._position_cache = ((), None)  # the old one freed first
            self._position_cache = (inputs, PositionRows(self.pos_embed, self.pos_embed_window, hw))
        return self._position_cache[1]

    def forward(self, image: Tensor) -> list[Tensor]:
        """(B, 3, H, W) normalised image -> per stage (B, C_s, H / 2^(s+2), W / 2^(s+2)),
        the finest first."""
        grad = torch.is_grad_enabled()
        if grad:
            x = self.patch_embed(image)
            x = x + self.position_embedding(tuple(x.shape[1:3]))
        else:
            hw = tuple(-(-side // 4) for side in image.shape[-2:])
            x = embed_by_bands(image, self.patch_embed, self.position_rows(hw))
        outputs = []
        for index, block in enumerate(self.blocks):
            x = block(x) if grad else block(x, overwrite=True)  # x: made here
            if index in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
