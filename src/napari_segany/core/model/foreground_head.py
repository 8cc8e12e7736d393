"""The built-in model's foreground head: foreground and border logits per pixel.

Not part of SAM. The built-in model's everything mode finds its objects with it
(``models/builtin/objects.py``), where SAM's point grid misses small objects; training uses the
same module, without hidden layers, as the auxiliary loss of the encoder.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

FOREGROUND, BORDER = 0, 1


class ForegroundHead(nn.Module):
    """Foreground and border logits at model-frame resolution from the embedding.

    ``hidden_layers`` 3x3 convolutions (GELU after each) at the embedding's width, then a
    1x1 convolution to ``2 * stride**2`` channels per embedding cell, rearranged into the
    cell's ``stride x stride`` pixels (pixel shuffle).

    Parameters
    ----------
    channels : int
        C, the embedding's channels.
    stride : int
        s, model-frame pixels per embedding cell (8 for the built-in model).
    hidden_layers : int
        Weights ``hidden.{i}.*``; 0 gives a linear head.
    """

    def __init__(self, channels: int, stride: int, hidden_layers: int = 0) -> None:
        super().__init__()
        self.stride = int(stride)
        self.hidden = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1) for _ in range(hidden_layers)
        )
        self.project = nn.Conv2d(channels, 2 * self.stride * self.stride, 1)

    def forward(self, embedding: Tensor) -> Tensor:
        """(B, C, h, w) embedding -> (B, 2, s h, s w) logits: channel
        :data:`FOREGROUND` (object pixels) and :data:`BORDER` (object pixels that touch
        another object or the background)."""
        features = embedding
        for layer in self.hidden:
            features = F.gelu(layer(features))
        return F.pixel_shuffle(self.project(features), self.stride)
