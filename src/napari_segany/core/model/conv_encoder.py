"""A small convolutional image encoder for the built-in model.

SAM's ViT encoders spend hundreds of millions of parameters on natural images. The
built-in model of napari-segany (see ``docs/models.md``) replaces the encoder with a
residual CNN of stride 8 whose last stage uses dilated convolutions for context, and
keeps SAM's prompt encoder and mask decoder unchanged. It maps ``(B, 3, S, S)``
normalised pixels to a ``(B, C, S / 8, S / 8)`` embedding, layer-normalised over
channels like SAM's neck, so the predictor, cache and everything mode serve it as they
serve SAM.

State-dict layout (read back by ``core/loading.py``)::

    image_encoder.stem.{0,2}.weight/bias         two stride-2 3x3 convolutions
    image_encoder.stages.{i}.down.weight/bias    stride-2 3x3 conv into stage i (i >= 1)
    image_encoder.stages.{i}.blocks.{j}.*        residual blocks of stage i
    image_encoder.neck.{0,1}.*                   1x1 conv to C and LayerNorm2d
    image_encoder.detail{2,4}.weight/bias        optional 1x1 convs of the pixel-unshuffled
                                                 stride-2 / stride-4 features, added
                                                 before the LayerNorm (none in the
                                                 shipped built-in model)
    image_encoder.input_size, ...blocks.{j}.dilation   integer buffers: the input side
                                                 and the block dilations, so that a
                                                 checkpoint describes its architecture
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import LayerNorm2d

CONV_STRIDE = 8
CONV_IMAGE_SIZE = 512


class ResidualBlock(nn.Module):
    """``x + bn2(conv2(gelu(bn1(conv1(x)))))`` followed by GELU; 3x3 convolutions.

    Parameters
    ----------
    channels : int
        Input and output channels.
    dilation : int
        Dilation of both convolutions (padding keeps the spatial size).
    """

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        # Persistent, so that a checkpoint describes its own architecture.
        self.register_buffer("dilation", torch.tensor(int(dilation)))
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        y = F.gelu(self.bn1(self.conv1(x)))
        return F.gelu(x + self.bn2(self.conv2(y)))


class ConvStage(nn.Module):
    """An optional stride-2 entry convolution, then residual blocks.

    Parameters
    ----------
    in_channels, channels : int
        Channels entering and inside the stage.
    dilations : sequence of int
        One residual block per entry, with that dilation.
    downsample : bool
        Start with a stride-2 3x3 convolution ``in_channels -> channels``.
    """

    def __init__(
        self, in_channels: int, channels: int, dilations: Sequence[int], downsample: bool
    ) -> None:
        super().__init__()
        self.down = nn.Conv2d(in_channels, channels, 3, stride=2, padding=1) if downsample else None
        self.blocks = nn.Sequential(*(ResidualBlock(channels, d) for d in dilations))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C, H / 2, W / 2) (or H, W without downsampling)."""
        if self.down is not None:
            x = F.gelu(self.down(x))
        return self.blocks(x)


class ConvEncoder(nn.Module):
    """Residual CNN encoder of stride 8 (see the module docstring).

    Parameters
    ----------
    img_size : int
        Side ``S`` of the square input, a multiple of 8.
    out_chans : int
        ``C``, channels of the embedding (the prompt embedding width).
    widths : sequence of int
        Channels of the stem (stride 2) and of the stages at strides 4 and 8, e.g.
        ``(32, 64, 128)``.
    stage_dilations : sequence of sequence of int
        Dilations of the residual blocks of the stride-4 and stride-8 stages.
    detail_strides : sequence of int
        Earlier feature maps (stride 2: the first stem convolution; stride 4: the
        stride-4 stage) folded into the embedding: each is rearranged so that a
        cell's ``8 / s x 8 / s`` pixels become channels (pixel unshuffle), projected
        by a 1x1 convolution ``image_encoder.detail{s}`` and added before the
        LayerNorm. The decoder's transposed convolutions unfold cells into 4 x 4
        sub-pixels, so this gives them the rim detail a stride-8 stage blurs.
        Empty (no ``detail`` weights) for the first built-in models.
    """

    def __init__(
        self,
        img_size: int = 512,
        out_chans: int = 128,
        widths: Sequence[int] = (32, 64, 128),
        stage_dilations: Sequence[Sequence[int]] = ((1,), (1, 2, 4, 8, 1, 2, 4, 8)),
        detail_strides: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if len(widths) != 3 or len(stage_dilations) != 2:
            raise ValueError("ConvEncoder needs 3 widths and dilations for 2 stages.")
        self.img_size = int(img_size)
        # Persistent, so that a checkpoint says which input side it was made for.
        self.register_buffer("input_size", torch.tensor([self.img_size]))
        stem, mid, deep = (int(w) for w in widths)
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(stem, mid, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.stages = nn.ModuleList(
            [
                ConvStage(mid, mid, stage_dilations[0], downsample=False),
                ConvStage(mid, deep, stage_dilations[1], downsample=True),
            ]
        )
        self.neck = nn.Sequential(nn.Conv2d(deep, out_chans, 1), LayerNorm2d(out_chans))
        channels_at = {2: stem, 4: mid}
        self.detail_strides = tuple(sorted({int(s) for s in detail_strides}))
        unknown = set(self.detail_strides) - set(channels_at)
        if unknown or len(self.detail_strides) != len(detail_strides):
            raise ValueError(
                f"detail_strides must be distinct values among (2, 4), got {detail_strides}"
            )
        for stride in self.detail_strides:
            fold = (CONV_STRIDE // stride) ** 2
            self.add_module(f"detail{stride}", nn.Conv2d(channels_at[stride] * fold, out_chans, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) normalised pixels -> (B, C, S / 8, S / 8) embedding."""
        features = {}
        x = self.stem[1](self.stem[0](x))
        features[2] = x
        x = self.stem[3](self.stem[2](x))
        x = self.stages[0](x)
        features[4] = x
        x = self.stages[1](x)
        x = self.neck[0](x)
        for stride in self.detail_strides:
            folded = F.pixel_unshuffle(features[stride], CONV_STRIDE // stride)
            x = x + getattr(self, f"detail{stride}")(folded)
        return self.neck[1](x)
