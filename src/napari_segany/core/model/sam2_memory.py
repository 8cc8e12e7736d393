"""SAM 2.1's memory: the parts that carry an object from one frame (slice) to the next.

- :class:`MemoryEncoder`: a frame's image embedding (256 x 64 x 64) and its mask
  logits (1024 x 1024) -> a 64-channel memory of the object on that frame, with its
  sine position encoding. The mask goes through a sigmoid, four stride-2 3 x 3
  convolutions (1 -> 4 -> 16 -> 64 -> 256 channels, each followed by a channel
  LayerNorm and GELU) and a 1 x 1 projection; added to the projected image features,
  it passes two ConvNeXt blocks (7 x 7 depthwise convolution, LayerNorm, 4x MLP,
  layer scale) and a 1 x 1 projection to 64 channels.
- :class:`MemoryAttention`: the current frame's 4096 tokens attend to themselves and
  to the memories (4 layers: self-attention, cross-attention to the memories, ReLU
  MLP, pre-norm), both with 2D axial rotary position encodings (RoPE); the object
  pointer tokens appended to the memories are not rotated.

Parameter names are those of the official checkpoints (``memory_encoder.*``,
``memory_attention.*``), so those entries of a SAM 2.1 file load unchanged. How
frames are chosen and the pointers and temporal encodings are added is the video
logic's (not here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import LayerNorm2d
from .dense import Linear, attention
from .fpn_neck import sine_position_encoding

__all__ = ["MemoryAttention", "MemoryEncoder", "RopeAttention", "axial_rope_angles"]


class _CXBlock(nn.Module):
    """ConvNeXt block on (B, C, H, W): ``x + gamma * MLP(norm(dwconv(x)))``."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = Linear(dim, 4 * dim)
        self.pwconv2 = Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(y))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class _Fuser(nn.Module):
    def __init__(self, dim: int = 256, depth: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_CXBlock(dim) for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class _MaskDownSampler(nn.Module):
    """(B, 1, 16 h, 16 w) mask probabilities -> (B, 256, h, w)."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(4):  # indices 0, 3, 6, 9: conv; 1, 4, 7, 10: norm (checkpoint keys)
            layers += [nn.Conv2d(channels, 4 * channels, 3, 2, 1), LayerNorm2d(4 * channels)]
            layers.append(nn.GELU())
            channels *= 4
        layers.append(nn.Conv2d(channels, dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


class MemoryEncoder(nn.Module):
    """A frame's memory of the object (module docstring).

    Parameters
    ----------
    dim : int
        Image embedding channels (256).
    out_dim : int
        Memory channels (64).
    """

    def __init__(self, dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = _MaskDownSampler(dim)
        self.pix_feat_proj = nn.Conv2d(dim, dim, kernel_size=1)
        self.fuser = _Fuser(dim)
        self.out_proj = nn.Conv2d(dim, out_dim, kernel_size=1)

    def forward(
        self, pix_feat: Tensor, masks: Tensor, masks_are_probabilities: bool = False
    ) -> tuple[Tensor, Tensor]:
        """(B, 256, h, w) features and (B, 1, 16 h, 16 w) mask logits (or, with
        ``masks_are_probabilities``, values in [0, 1]) -> ((B, 64, h, w) memory,
        (B, 64, h, w) its position encoding)."""
        masks = masks if masks_are_probabilities else torch.sigmoid(masks)
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(masks)
        x = self.out_proj(self.fuser(x))
        height, width = x.shape[-2:]
        position = sine_position_encoding(height, width, x.shape[1], x.device).to(x.dtype)
        return x, position.expand(x.shape[0], -1, -1, -1)


def axial_rope_angles(dim: int, width: int, height: int, theta: float = 10000.0) -> Tensor:
    """(width * height, dim / 2) rotation angles of 2D axial RoPE for tokens in row-major
    order: the first dim / 4 channel pairs turn with the token's column, the others
    with its row, at frequencies ``theta ** (-4 k / dim)``."""
    frequencies = 1.0 / theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim)
    index = torch.arange(width * height, dtype=torch.float32)
    column, row = index % width, torch.div(index, width, rounding_mode="floor")
    return torch.cat([torch.outer(column, frequencies), torch.outer(row, frequencies)], dim=-1)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Turn consecutive channel pairs (x0, x1) of (..., L, d) by the (L, d/2) angles."""
    pairs = x.float().unflatten(-1, (-1, 2))
    first, second = pairs[..., 0], pairs[..., 1]
    turned = torch.stack([first * cos - second * sin, first * sin + second * cos], dim=-1)
    return turned.flatten(-2).to(x.dtype)


class RopeAttention(nn.Module):
    """One-head attention with axial RoPE on queries and keys (the keys' angles repeat
    per frame of memory; the last ``num_k_exclude_rope`` keys are not turned).

    Parameters
    ----------
    dim : int
        Query and internal width (256).
    kv_dim : int
        Key / value input width (256 for self-attention, 64 for the memories).
    theta : float
    """

    def __init__(self, dim: int = 256, kv_dim: int = 256, theta: float = 10000.0) -> None:
        super().__init__()
        self.q_proj, self.out_proj = Linear(dim, dim), Linear(dim, dim)
        self.k_proj, self.v_proj = Linear(kv_dim, dim), Linear(kv_dim, dim)
        self.theta = theta
        self._angles: tuple[int, Tensor, Tensor] | None = None

    def _cos_sin(self, tokens: int, device: torch.device) -> tuple[Tensor, Tensor]:
        if self._angles is None or self._angles[0] != tokens or self._angles[1].device != device:
            side = int(round(tokens**0.5))  # square maps, as the reference assumes
            angles = axial_rope_angles(self.q_proj.out_features, side, side, self.theta)
            self._angles = (tokens, angles.cos().to(device), angles.sin().to(device))
        return self._angles[1], self._angles[2]

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        """(B, Lq, dim) queries, (B, Lk, kv_dim) keys and values -> (B, Lq, dim).

        With narrower values (the memories' 64 channels) the value projection runs
        after the attention: each softmax row sums to one, so ``A (v W^T + b) =
        (A v) W^T + b``, and the product with the 30k memory tokens is 4x narrower
        (SAM 2.1's cross-attention, 7 frames of memory: 2.9 -> 2.2 s per 4 layers at
        2 threads).
        """
        q, k = self.q_proj(q), self.k_proj(k)
        late_values = v.shape[-1] < self.v_proj.out_features
        if not late_values:
            v = self.v_proj(v)
        cos, sin = self._cos_sin(q.shape[-2], q.device)
        q = _rotate(q, cos, sin)
        turned = k.shape[-2] - num_k_exclude_rope
        if turned:
            repeat = turned // q.shape[-2]
            rotated = _rotate(k[:, :turned], cos.repeat(repeat, 1), sin.repeat(repeat, 1))
            k = torch.cat([rotated, k[:, turned:]], dim=1)
        out = attention(q[:, None], k[:, None], v[:, None])[:, 0]
        if late_values:
            out = self.v_proj(out)
        return self.out_proj(out)


class _MemoryAttentionLayer(nn.Module):
    def __init__(self, dim: int = 256, memory_dim: int = 64, hidden: int = 2048) -> None:
        super().__init__()
        self.self_attn = RopeAttention(dim, dim)
        self.cross_attn_image = RopeAttention(dim, memory_dim)
        self.linear1, self.linear2 = Linear(dim, hidden), Linear(hidden, dim)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(dim) for _ in range(3))

    def forward(self, x: Tensor, memory: Tensor, memory_pos: Tensor, pointers: int) -> Tensor:
        normed = self.norm1(x)
        x = x + self.self_attn(normed, normed, normed)
        keys = memory + memory_pos
        x = x + self.cross_attn_image(self.norm2(x), keys, memory, pointers)
        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))


class MemoryAttention(nn.Module):
    """The current frame's tokens conditioned on the memories (module docstring).

    Parameters
    ----------
    dim, memory_dim : int
        Token (256) and memory (64) widths.
    depth : int
        Layers (4 in every SAM 2.1 size).
    """

    def __init__(self, dim: int = 256, memory_dim: int = 64, depth: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_MemoryAttentionLayer(dim, memory_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        current: Tensor,
        current_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        num_obj_ptr_tokens: int = 0,
    ) -> Tensor:
        """(B, L, 256) tokens of the current frame (row-major, L a square) and their
        position encoding, (B, M, 64) memories (frames of L tokens, then the object
        pointer tokens) and theirs -> (B, L, 256) conditioned tokens."""
        x = current + 0.1 * current_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_obj_ptr_tokens)
        return self.norm(x)
