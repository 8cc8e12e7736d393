"""SAM 2.1's image encoder around the Hiera trunk: the FPN neck and its sine encoding.

The neck projects each trunk stage to ``d_model`` channels with a 1 x 1 convolution
and, on the levels listed in ``top_down_levels``, adds the next coarser level's
output enlarged 2x (nearest). Each level gets a fixed sine position encoding.
:class:`Sam2ImageEncoder` drops the ``scalp`` coarsest levels (SAM 2.1: the stride-32
one). Parameter names are those of the official checkpoints
(``image_encoder.neck.convs.<i>.conv.*``, listed coarsest first).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dense import linear
from .hiera import HIERA_SPECS, Hiera

__all__ = [
    "FpnNeck",
    "Sam2ImageEncoder",
    "build_sam2_image_encoder",
    "sine_position_encoding",
]

D_MODEL = 256  # the neck's output channels, every SAM 2.1 size
TOP_DOWN_LEVELS = (2, 3)  # SAM 2.1: levels 0 and 1 take their stage's features only


@functools.lru_cache(maxsize=16)
def _sine_table(height: int, width: int, channels: int) -> Tensor:
    """(channels, H, W) float32 on the CPU; see :func:`sine_position_encoding`."""
    half = channels // 2
    with torch.inference_mode(False):
        y = torch.arange(1, height + 1, dtype=torch.float32)
        x = torch.arange(1, width + 1, dtype=torch.float32)
        y = y / (y[-1:] + 1e-6) * (2 * math.pi)
        x = x / (x[-1:] + 1e-6) * (2 * math.pi)
        steps = torch.arange(half, dtype=torch.float32)
        periods = 10000 ** (2 * torch.div(steps, 2, rounding_mode="floor") / half)

        def encode(positions: Tensor) -> Tensor:  # (n,) -> (n, half): sin, cos alternating
            phases = positions[:, None] / periods
            return torch.stack([phases[:, 0::2].sin(), phases[:, 1::2].cos()], 2).flatten(1)

        by_y, by_x = encode(y), encode(x)  # (H, half), (W, half)
        table = torch.cat(
            [by_y[:, None].expand(height, width, half), by_x[None].expand(height, width, half)],
            dim=2,
        )
        return table.permute(2, 0, 1).contiguous()


def sine_position_encoding(
    height: int, width: int, channels: int, device: torch.device | str = "cpu"
) -> Tensor:
    """The neck's fixed position encoding of an (H, W) map: (1, channels, H, W).

    Rows then columns, each normalised to (0, 2 pi] (position / (last + 1e-6)) and
    encoded with ``channels / 2`` sines and cosines of periods
    ``10000 ** (2 floor(i / 2) / (channels / 2))``, alternating sin, cos.
    """
    return _sine_table(height, width, channels).to(device)[None]


class _Lateral(nn.Module):
    """A 1 x 1 convolution kept under the checkpoints' name (``convs.<i>.conv``)."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W), by :func:`_pixelwise_linear`."""
        return _pixelwise_linear(x, self.conv.weight.flatten(1), self.conv.bias)


class FpnNeck(nn.Module):
    """Trunk stages -> ``d_model``-channel maps and their position encodings.

    Parameters
    ----------
    d_model : int
        Output channels (256).
    backbone_channels : list of int
        The trunk's channels per stage, coarsest first (the checkpoints' order).
    top_down_levels : tuple of int
        Levels (0: finest) that add the coarser level's output (SAM 2.1: (2, 3)).
    """

    def __init__(
        self, d_model: int, backbone_channels: list[int], top_down_levels: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.convs = nn.ModuleList(_Lateral(channels, d_model) for channels in backbone_channels)
        self.top_down_levels = tuple(top_down_levels)

    def forward(
        self,
        stages: list[Tensor],
        with_encodings: bool = True,
        after: dict[int, nn.Conv2d] | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per-stage (B, C_s, H_s, W_s), finest first -> (features, encodings), both
        finest first, (B, d_model, H_s, W_s) and (1, d_model, H_s, W_s).

        ``with_encodings=False`` skips the encodings (an empty list; images need none:
        the decoder has its own). ``after`` maps levels to 1 x 1 convolutions applied to
        their output (SAM 2's decoder projections of the fine levels); on a level that
        neither takes nor gives a top-down input the two maps run as one, so no
        ``d_model``-wide map is formed (64 MiB at 256 x 256).
        """
        last = len(self.convs) - 1
        features: list[Tensor] = [torch.empty(0)] * len(stages)
        coarser = None
        for level in range(last, -1, -1):
            conv = self.convs[last - level]
            project = (after or {}).get(level)
            alone = level not in self.top_down_levels and level - 1 not in self.top_down_levels
            if project is not None and alone:
                features[level] = coarser = _two_1x1(stages[level], conv.conv, project)
                continue
            lateral = conv(stages[level])
            if level in self.top_down_levels and coarser is not None:
                lateral = lateral + F.interpolate(coarser.float(), scale_factor=2.0, mode="nearest")
            coarser = lateral
            features[level] = lateral if project is None else project(lateral)
        if not with_encodings:
            return features, []
        encodings = [
            sine_position_encoding(*feature.shape[-2:], self.d_model, feature.device).to(
                feature.dtype
            )
            for feature in features
        ]
        return features, encodings


def _two_1x1(x: Tensor, first: nn.Conv2d, second: nn.Conv2d) -> Tensor:
    """``second(first(x))`` for two 1 x 1 convolutions, as one linear map of each
    pixel's channels: (B, C, H, W) -> (B, C'', H, W)."""
    weight = second.weight.flatten(1) @ first.weight.flatten(1)
    bias = second.weight.flatten(1) @ first.bias + second.bias
    return _pixelwise_linear(x, weight, bias)


def _pixelwise_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """A 1 x 1 convolution as one GEMM on the channels-last view: (B, C, H, W) ->
    (B, C', H, W) with ``weight`` (C', C). The trunk's maps are channels-last in
    memory, where ``conv2d`` reorders them (102 ms for the 256 x 256 x 96 level in a
    profile of the whole encoder)."""
    return linear(x.permute(0, 2, 3, 1), weight, bias).permute(0, 3, 1, 2)


class Sam2ImageEncoder(nn.Module):
    """Hiera trunk + FPN neck, the ``scalp`` coarsest levels dropped.

    Parameters
    ----------
    trunk : Hiera
    neck : FpnNeck
    scalp : int
        Coarsest levels dropped (SAM 2.1: 1).
    """

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        self.trunk, self.neck, self.scalp = trunk, neck, scalp

    def forward(
        self,
        image: Tensor,
        with_encodings: bool = True,
        after: dict[int, nn.Conv2d] | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """(B, 3, S, S) normalised image -> (features, encodings) finest first:
        SAM 2.1 at S = 1024 gives (B, 256, 256, 256), (B, 256, 128, 128) and
        (B, 256, 64, 64). ``with_encodings`` and ``after`` as in :meth:`FpnNeck.forward`."""
        features, encodings = self.neck(self.trunk(image), with_encodings, after)
        kept = len(features) - self.scalp
        return features[:kept], encodings[:kept]


def build_sam2_image_encoder(size: str) -> Sam2ImageEncoder:
    """SAM 2.1's image encoder of one size ("tiny", "small", "base_plus", "large"),
    untrained; load an official state dict's ``image_encoder.*`` entries into it."""
    if size not in HIERA_SPECS:
        raise ValueError(f"SAM 2.1 size must be one of {sorted(HIERA_SPECS)}, got {size!r}")
    trunk = Hiera(HIERA_SPECS[size])
    neck = FpnNeck(D_MODEL, trunk.channels[::-1], TOP_DOWN_LEVELS)
    return Sam2ImageEncoder(trunk, neck, scalp=1)
