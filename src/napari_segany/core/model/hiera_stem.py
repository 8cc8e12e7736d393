"""Hiera's stem: the patch embedding plus the position embedding, made band by band.

The stem's result is the first stage's map, (B, H/4, W/4, C): the 7 x 7 stride-4
convolution of the image plus a position embedding, itself a bicubic enlargement of a
small background grid plus one window-sized embedding tiled over the map. Whole, that
is three or four maps of that size at once (convolution output, enlargement, tiles,
sum: 29 MiB each for SAM 2.1-B+ at 1024 x 1024). Without autograd
:func:`embed_by_bands` writes the result into one map a band of rows at a time: the
convolution of the band's input rows, and the enlargement as two small products
(bicubic interpolation without antialiasing is separable: ``rows @ grid @ cols^T``,
interpolation matrices found by enlarging identity matrices with torch's own kernel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PatchEmbed", "PositionRows", "embed_by_bands"]

# Output rows per band (a multiple of every first-stage window side: 8).
_BAND_ROWS = 32


class PatchEmbed(nn.Module):
    """7 x 7 convolution at stride 4 (padding 3): (B, 3, H, W) -> (B, H/4, W/4, C)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)

    def band(self, image: Tensor, first: int, stop: int) -> Tensor:
        """Output rows ``first:stop`` of :meth:`forward` from the input rows they read
        (``4 first - 3`` to ``4 stop - 1``, zero-padded past the image as the whole
        convolution pads), (B, stop - first, W/4, C)."""
        height = image.shape[-2]
        top, bottom = 4 * first - 3, 4 * stop
        rows = image[:, :, max(top, 0) : min(bottom, height)]
        rows = F.pad(rows, (0, 0, max(-top, 0), max(bottom - height, 0)))
        conv = self.proj
        return F.conv2d(rows, conv.weight, conv.bias, stride=4, padding=(0, 3)).permute(0, 2, 3, 1)


def _bicubic_matrix(size_in: int, size_out: int, like: Tensor) -> Tensor:
    """(size_out, size_in) matrix of torch's bicubic enlargement along one axis."""
    identity = torch.eye(size_in, dtype=like.dtype, device=like.device)
    enlarged = F.interpolate(identity[None, :, :, None], size=(size_out, 1), mode="bicubic")
    return enlarged[0, :, :, 0].T


class PositionRows:
    """The position embedding of an (H, W) map, any band of rows on demand.

    Parameters
    ----------
    grid : Tensor
        (1, C, h, w) background grid (``pos_embed``).
    window : Tensor
        (1, C, s, s) window embedding (``pos_embed_window``), tiled; H and W are
        multiples of s.
    hw : tuple of int
        (H, W) of the map.
    """

    def __init__(self, grid: Tensor, window: Tensor, hw: tuple[int, int]) -> None:
        with torch.autocast(grid.device.type, enabled=False):  # the parameters' precision
            self.rows = _bicubic_matrix(grid.shape[-2], hw[0], grid)  # (H, h)
            cols = _bicubic_matrix(grid.shape[-1], hw[1], grid)  # (W, w)
            across = torch.matmul(grid[0], cols.T).permute(1, 2, 0)  # (h, W, C)
        self.across = across.reshape(across.shape[0], -1)  # (h, W C)
        self.window = window[0].permute(1, 2, 0)  # (s, s, C)
        self.width = hw[1]

    def band(self, first: int, stop: int) -> Tensor:
        """(stop - first, W, C) embedding rows; ``first`` and ``stop`` multiples of the
        window side."""
        side = self.window.shape[0]
        with torch.autocast(self.across.device.type, enabled=False):
            band = torch.matmul(self.rows[first:stop], self.across)
        band = band.view(stop - first, self.width, -1)
        tiles = band.view(-1, side, self.width // side, side, band.shape[-1])
        tiles.add_(self.window[None, :, None])
        return band


def embed_by_bands(image: Tensor, patch_embed: PatchEmbed, positions: PositionRows) -> Tensor:
    """``patch_embed(image) + position embedding`` as (B, H/4, W/4, C), one band of
    :data:`_BAND_ROWS` rows at a time into one map (no autograd)."""
    height = -(-image.shape[-2] // 4)
    out = None
    for first in range(0, height, _BAND_ROWS):
        stop = min(first + _BAND_ROWS, height)
        band, position = patch_embed.band(image, first, stop), positions.band(first, stop)
        if out is None:  # float32 under autocast too (the convolution gives bf16 there)
            dtype = torch.promote_types(band.dtype, position.dtype)
            out = band.new_empty(band.shape[0], height, *band.shape[2:], dtype=dtype)
        torch.add(band, position, out=out[:, first:stop])
    return out
