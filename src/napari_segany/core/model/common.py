"""Small layers shared by the SAM encoders and the mask decoder.

Parameter names (``weight``/``bias``, ``lin1``/``lin2``) are those of the official
checkpoints, so a state dict loads unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dense import Linear

__all__ = ["LayerNorm2d", "MLPBlock"]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, H, W)`` tensor.

    Each pixel's ``C`` values are normalised to zero mean and unit (biased)
    variance, then scaled by ``weight`` and shifted by ``bias`` (both ``(C,)``).

    Parameters
    ----------
    num_channels
        ``C``, the size of axis 1.
    eps
        Added to the variance before the square root.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` of shape ``(B, C, H, W)``.

        Returns the same shape and dtype, in ``x``'s memory format (channels-last
        stays channels-last, anything else comes back contiguous).
        """
        # A channels-last view makes C the last axis, where the fused kernel works.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        if channels_last and not x.is_contiguous():
            return y.permute(0, 3, 1, 2)  # already channels-last contiguous
        return y.permute(0, 3, 1, 2).contiguous()


class MLPBlock(nn.Module):
    """Two-layer perceptron ``lin2(act(lin1(x)))`` on the last axis.

    Parameters
    ----------
    embedding_dim
        Size of the input and output last axis.
    mlp_dim
        Hidden width.
    act
        Activation class (instantiated without arguments), GELU by default.
    """

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = Linear(embedding_dim, mlp_dim)
        self.lin2 = Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., embedding_dim) -> (..., embedding_dim)``."""
        return self.lin2(self.act(self.lin1(x)))
