"""micro-sam's instance decoder: a UNETR-style convolutional decoder over SAM's image
embedding that predicts, per pixel, foreground and the distances to object centres and
boundaries (micro-sam's "AIS"; its ``*_decoder`` files).

From the (1, 256, 64, 64) embedding (stride 16):

- four *deconvolution* stages make features at strides 8, 4, 2 and 1 (512, 256, 128,
  64 channels): each a 2x upsampling (bilinear + 1 x 1 convolution, or a 2 x 2
  transposed convolution in files trained so), a 3 x 3 convolution, BatchNorm, ReLU;
- a *base* block lifts the embedding to 512 channels, and three decoder levels go back
  up (upsample to the next stride and half the channels, concatenate the centre half of
  that stride's deconvolution channels, two InstanceNorm-conv-ReLU pairs);
- one more 2x upsampling to stride 1, concatenated with the stride-1 deconvolution
  features, a last block, a 1 x 1 convolution to 3 channels and a sigmoid.

Every block is InstanceNorm (no affine parameters) -> 3 x 3 convolution -> ReLU,
twice, as in torch-em. Parameter names are those of micro-sam's decoder files (the
non-encoder entries of torch-em's ``UNETR``: ``base.*``, ``decoder.*``, ``deconv1-4.*``,
``deconv_out.*``, ``decoder_head.*``, ``out_conv.*``), so a file loads unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint_file import key_mismatches
from ..errors import CheckpointError

__all__ = ["OUTPUTS", "InstanceDecoder", "build_instance_decoder", "maps_on_plane"]

OUTPUTS = ("foreground", "center_distances", "boundary_distances")
_NORM_ROWS = 1 << 15  # pixels squared at once by _InstanceNorm (16 MiB at 128 channels)


class _Upsample(nn.Module):
    """2x bilinear upsampling and a 1 x 1 convolution (keys ``conv.*``), run in the
    other order: both are linear and the interpolation's weights sum to one, so the
    result is the same, with the convolution on a quarter of the pixels and the
    interpolation on its (fewer) output channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.conv(x), scale_factor=2, mode="bilinear", align_corners=False)


class _TransposedUpsample(nn.Module):
    """2x upsampling by a 2 x 2 transposed convolution (keys ``block.*``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


def _upsample(in_channels: int, out_channels: int, transposed: bool) -> nn.Module:
    kind = _TransposedUpsample if transposed else _Upsample
    return kind(in_channels, out_channels)


class _Conv(nn.Module):
    """A 3 x 3 convolution, padded (keys ``block.*``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class _Deconv(nn.Module):
    """Upsample 2x, 3 x 3 convolution, BatchNorm, ReLU (keys ``block.0-2.*``).

    In eval mode the BatchNorm (an affine map per channel) is folded into the
    convolution's weights and bias: one pass over the map fewer, same result up to
    float rounding."""

    def __init__(self, in_channels: int, out_channels: int, transposed: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _upsample(in_channels, out_channels, transposed),
            _Conv(out_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self.block(x)
        upsample, conv, norm, _ = self.block
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        weight = conv.block.weight * scale[:, None, None, None]
        bias = (conv.block.bias - norm.running_mean) * scale + norm.bias
        return F.relu(F.conv2d(upsample(x), weight, bias, padding=1), inplace=True)


class _InstanceNorm(nn.Module):
    """``nn.InstanceNorm2d`` without parameters (biased variance, eps 1e-5), in any
    memory layout: torch's own copies channels-last maps to channels-first and back
    (measured: 1.9 of 7.6 s of the decoder at 1024 x 1024).

    With ``in_place`` (eval mode) the input is normalised where it lies: at full
    resolution a new map costs more in fresh pages than the arithmetic (measured:
    0.94 of 3.3 s of the decoder, fp32, 2 threads)."""

    eps = 1e-5

    def __init__(self, in_place: bool = False) -> None:
        super().__init__()
        self.in_place = in_place

    def forward(self, x: Tensor) -> Tensor:
        # two passes (the mean, then the centred squares a piece at a time) instead of
        # torch.var_mean, slow over the spatial axes of a channels-last map
        pixels = x.shape[2] * x.shape[3]
        mean = x.sum(dim=(2, 3), keepdim=True) / pixels
        centred = x.sub_(mean) if self.in_place and not self.training else x - mean
        squares = centred.new_zeros(centred.shape[:2] + (1, 1))
        rows = centred.permute(0, 2, 3, 1).reshape(x.shape[0], pixels, x.shape[1])
        for start in range(0, pixels, _NORM_ROWS):  # squares a piece at a time, in cache
            piece = rows[:, start : start + _NORM_ROWS]
            squares += (piece * piece).sum(dim=1)[..., None, None]
        return centred.mul_(torch.rsqrt(squares / pixels + self.eps))


class _ConvBlock(nn.Module):
    """(InstanceNorm, 3 x 3 convolution, ReLU) twice (keys ``block.1``, ``block.4``).

    ``keep_input``: the input is read elsewhere too, so it is not normalised in place
    (the second norm's input, the ReLU's fresh output, always is)."""

    def __init__(self, in_channels: int, out_channels: int, keep_input: bool = False) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _InstanceNorm(in_place=not keep_input),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            _InstanceNorm(in_place=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class _Levels(nn.Module):
    """The decoder's levels (keys ``blocks.*``, ``samplers.*``)."""

    def __init__(self, widths: list[int], transposed: bool) -> None:
        super().__init__()
        pairs = list(zip(widths[:-1], widths[1:]))
        # a level's input: its upsampled features and as many skip channels (wide)
        self.blocks = nn.ModuleList(_ConvBlock(wide, narrow) for wide, narrow in pairs)
        self.samplers = nn.ModuleList(_upsample(wide, narrow, transposed) for wide, narrow in pairs)

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        for block, sampler, skip in zip(self.blocks, self.samplers, skips):
            x = sampler(x)
            first = (skip.shape[1] - x.shape[1]) // 2  # the skip's centre channels
            x = block(torch.cat([x, skip[:, first : first + x.shape[1]]], dim=1))
        return x


class InstanceDecoder(nn.Module):
    """Foreground, centre-distance and boundary-distance maps from a SAM embedding.

    Parameters
    ----------
    embed_dim : int
        Channels of the embedding (256).
    features : int
        Channels at stride 1 (64); the strides above double them.
    transposed : bool
        Upsample by transposed convolutions (as some decoder files were trained).
    """

    def __init__(self, embed_dim: int = 256, features: int = 64, transposed: bool = False) -> None:
        super().__init__()
        widths = [features * 2**level for level in range(4)][::-1]  # 512, 256, 128, 64
        self.transposed = transposed
        self.base = _ConvBlock(embed_dim, widths[0], keep_input=True)  # deconv1 reads it too
        self.decoder = _Levels(widths, transposed)
        self.deconv1 = _Deconv(embed_dim, widths[0], transposed)
        self.deconv2 = _Deconv(widths[0], widths[1], transposed)
        self.deconv3 = _Deconv(widths[1], widths[2], transposed)
        self.deconv4 = _Deconv(widths[2], widths[3], transposed)
        self.deconv_out = _upsample(widths[3], widths[3], transposed)
        self.decoder_head = _ConvBlock(2 * widths[3], widths[3])
        self.out_conv = nn.Conv2d(widths[3], len(OUTPUTS), 1)

    def forward(self, embedding: Tensor) -> Tensor:
        """(B, 256, h, w) -> (B, 3, 16 h, 16 w) maps in [0, 1] (:data:`OUTPUTS`).

        Runs channels-last (the convolutions' fast layout on a CPU: 3x faster at full
        resolution than channels-first); the result is channels-last too.
        """
        embedding = embedding.contiguous(memory_format=torch.channels_last)
        stride8 = self.deconv1(embedding)
        stride4 = self.deconv2(stride8)
        stride2 = self.deconv3(stride4)
        stride1 = self.deconv4(stride2)
        x = self.decoder(self.base(embedding), [stride8, stride4, stride2])
        x = torch.cat([self.deconv_out(x), stride1], dim=1)
        return torch.sigmoid(self.out_conv(self.decoder_head(x)))


def build_instance_decoder(state: Mapping[str, Tensor], source: str = "") -> InstanceDecoder:
    """An :class:`InstanceDecoder` holding a micro-sam decoder file's weights.

    Raises
    ------
    CheckpointError
        When the entries are not a decoder's (names or shapes), saying which.
    """
    transposed = any(k.startswith("decoder.samplers") and ".block." in k for k in state)
    decoder = InstanceDecoder(transposed=transposed)
    listed = key_mismatches(decoder.state_dict(), state)
    if listed:
        where = f" in {source}" if source else ""
        raise CheckpointError(
            f"The instance decoder's entries{where} are not micro-sam's ({listed}); give a "
            "micro-sam '*_decoder' file (e.g. vit_b_lm_decoder)."
        )
    decoder.load_state_dict(dict(state), strict=True)
    return decoder.to(memory_format=torch.channels_last).eval()


def maps_on_plane(maps: Tensor, input_hw: tuple[int, int], original_hw: tuple[int, int]) -> Tensor:
    """(B, 3, S, S) maps of a padded model frame -> (B, 3, H, W) on the plane: the part
    of the frame the plane fills (``input_hw``), resized bilinearly to ``original_hw``
    (as micro-sam does)."""
    cropped = maps[..., : input_hw[0], : input_hw[1]]
    if tuple(cropped.shape[-2:]) == tuple(original_hw):
        return cropped
    return F.interpolate(cropped, tuple(original_hw), mode="bilinear", align_corners=False)
