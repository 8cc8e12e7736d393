"""Multi-head attention of SAM's two-way transformer, with a fast path for few tokens.

A prompt has few tokens (T ~ 5-10) and the image many (L = h * w = 4096). The cross
attentions then never project the image to the attention width: by reassociating the
products, the image meets only small (H * T, C) matrices (H heads). Images are passed
as lists of pixel blocks, (B, r_i, C).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .dense import Linear

__all__ = ["ProjectedAttention"]


class ProjectedAttention(nn.Module):
    """Multi-head attention whose projections may shrink the channel count.

    Queries, keys and values are projected from ``embedding_dim`` to
    ``embedding_dim // downsample_rate`` channels, attended with
    :func:`torch.nn.functional.scaled_dot_product_attention` and projected back.
    :meth:`attend_tokens_to_image` and :meth:`attend_image_to_tokens` compute the same
    for few tokens and a large image without projecting the image.

    Parameters
    ----------
    embedding_dim : int
        Channels of the inputs and of the output.
    num_heads : int
        Attention heads; must divide ``embedding_dim // downsample_rate``.
    downsample_rate : int
        Channel reduction of the internal projections.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal_dim = embedding_dim // downsample_rate
        if internal_dim % num_heads != 0:
            raise InputError(
                f"num_heads={num_heads} must divide the attention width {internal_dim} "
                f"(embedding_dim={embedding_dim} // downsample_rate={downsample_rate}); "
                "choose a number of heads that divides it."
            )
        self.embedding_dim = embedding_dim
        self.internal_dim = internal_dim
        self.num_heads = num_heads
        self.q_proj = Linear(embedding_dim, internal_dim)
        self.k_proj = Linear(embedding_dim, internal_dim)
        self.v_proj = Linear(embedding_dim, internal_dim)
        self.out_proj = Linear(internal_dim, embedding_dim)

    def _split_heads(self, x: Tensor, batch: int) -> Tensor:
        """(B, L, C) -> (batch, heads, L, C / heads), broadcasting B = 1 to ``batch``."""
        b, length, channels = x.shape
        x = x.view(b, length, self.num_heads, channels // self.num_heads).transpose(1, 2)
        return x.expand(batch, -1, -1, -1)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attend ``q`` (B, Lq, C) to ``k``/``v`` (B, Lk, C); batch sizes of 1 broadcast.

        Returns
        -------
        Tensor
            (B, Lq, C) with B the largest input batch size.
        """
        return self.attend_projected(q, self.k_proj(k), self.v_proj(v))

    def attend_projected(self, q: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """:meth:`forward` with keys and values already projected, (B, Lk, internal_dim)."""
        batch = max(q.shape[0], keys.shape[0], values.shape[0])
        if batch > 1 and keys.shape[0] == values.shape[0] == 1:
            # Shared keys: the N query sets are independent rows of one long query set.
            queries, length = q.shape[0], q.shape[1]
            out = self.attend_projected(q.reshape(1, queries * length, -1), keys, values)
            return out.view(queries, length, -1)
        query = self._split_heads(self.q_proj(q), batch)
        attended = F.scaled_dot_product_attention(
            query, self._split_heads(keys, batch), self._split_heads(values, batch)
        )
        return self.out_proj(attended.transpose(1, 2).flatten(2))

    def project_image(
        self, key_blocks: list[Tensor], value_blocks: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Project a shared image (blocks of (1, r_i, C)) for :meth:`attend_projected_image`.

        Returns
        -------
        keys : Tensor
            (heads, head_dim, L), already scaled by ``head_dim ** -0.5``.
        values : Tensor
            (heads, L, head_dim).
        """
        keys = torch.cat([self.k_proj(block[0]) for block in key_blocks])
        values = torch.cat([self.v_proj(block[0]) for block in value_blocks])
        keys = keys.view(len(keys), self.num_heads, -1)
        keys = (keys * keys.shape[-1] ** -0.5).permute(1, 2, 0).contiguous()
        return keys, values.view(len(values), self.num_heads, -1).transpose(0, 1).contiguous()

    def attend_projected_image(self, tokens: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """Attend tokens (N, T, C) to a shared image projected by :meth:`project_image`."""
        count, length, _ = tokens.shape
        queries = self.q_proj(tokens).view(count * length, self.num_heads, -1).transpose(0, 1)
        weights = _softmax(torch.bmm(queries, keys), dim=-1)  # (heads, N * T, L)
        attended = torch.bmm(weights, values).transpose(0, 1)  # (N * T, heads, head_dim)
        return self.out_proj(attended.reshape(count, length, -1))

    def _head_weights(self, linear: nn.Linear) -> Tensor:
        """Weight of an input projection as (heads, head_dim, embedding_dim)."""
        return linear.weight.view(self.num_heads, -1, self.embedding_dim)

    def attend_tokens_to_image(
        self, tokens: Tensor, key_blocks: list[Tensor], value_blocks: list[Tensor]
    ) -> Tensor:
        """``forward(tokens, keys, values)`` for a few tokens, without projecting the image.

        With T tokens, H heads and head width d, the scores of head h are
        ``(q_h W_k,h) x^T`` plus a per-row constant (``q_h . b_k,h``, which softmax
        ignores), and its output is ``(A_h X) W_v,h^T + b_v,h`` (rows of ``A_h`` sum to
        1): the L image tokens meet an (H * T, C) matrix instead of being projected to
        H * d channels. That is cheaper while H * T < H * d per image; otherwise this
        projects (:meth:`forward`).

        Parameters
        ----------
        tokens : Tensor
            (N, T, C) queries.
        key_blocks, value_blocks : list of Tensor
            Keys and values in blocks of pixels, (B, r_i, C), B = 1 (shared by the N
            query sets) or N.

        Returns
        -------
        Tensor
            (N, T, C).
        """
        count, length, channels = tokens.shape
        batch = key_blocks[0].shape[0]
        if self.num_heads * count * length >= batch * self.internal_dim:
            return self.forward(tokens, torch.cat(key_blocks, 1), torch.cat(value_blocks, 1))
        heads = self.num_heads
        queries = self.q_proj(tokens).view(count, length, heads, -1)
        queries = queries * queries.shape[-1] ** -0.5
        image_queries = torch.einsum("nthd,hdc->nhtc", queries, self._head_weights(self.k_proj))
        # B = 1: all N * H * T rows meet the shared image at once.
        image_queries = image_queries.reshape(batch, -1, channels)
        scores = torch.cat([torch.bmm(image_queries, keys.mT) for keys in key_blocks], dim=-1)
        weights = _softmax(scores, dim=-1).split([keys.shape[1] for keys in key_blocks], -1)
        pooled = torch.bmm(weights[0], value_blocks[0])
        for block_weights, values in zip(weights[1:], value_blocks[1:]):
            pooled = torch.baddbmm(pooled, block_weights, values)
        attended = torch.einsum(
            "nhtc,hdc->nthd",
            pooled.view(count, heads, length, channels),
            self._head_weights(self.v_proj),
        )
        return self.out_proj(attended.reshape(count, length, -1) + self.v_proj.bias)

    def attend_image_to_tokens(
        self,
        query_blocks: list[Tensor],
        tokens: Tensor,
        values: Tensor,
        residual_blocks: list[Tensor],
        in_place: bool = False,
        readout: tuple[list[Tensor], Tensor] | None = None,
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """``residual + forward(queries, tokens, values)`` block by block, image unprojected.

        With T key tokens, the scores of head h are ``x (W_q,h^T k_h^T) + b_q,h k_h^T``
        and the output is ``sum_h A_h (v_h W_o,h^T) + b_o``: the image meets a
        (C, H * T) and an (H * T, C) matrix. ``b_o`` is spread over the heads as
        ``b_o / H`` (each head's weights sum to 1), so the update is one batched
        matmul-add onto the residual. Scores are laid out (H * T, pixels), so the
        softmax over the T tokens runs along contiguous pixels. Projects instead
        (:meth:`forward`) when that is cheaper (many tokens).

        Parameters
        ----------
        query_blocks : list of Tensor
            Queries in blocks of pixels, (B, r_i, C), B = 1 (shared by the N token
            sets) or N.
        tokens, values : Tensor
            (N, T, C) keys and values.
        residual_blocks : list of Tensor
            (B, r_i, C), added to the attention output.
        in_place : bool
            Add into the residual blocks (no autograd; they must be (N, r_i, C)).
        readout : tuple or None
            Blocks ``residual_i @ F`` (B, r_i, K) and F (C, K): their update
            ``(output_i - residual_i) @ F`` costs only an (H * T, K) matrix.

        Yields
        ------
        tuple of Tensor
            (N, r_i, C) output and (N, r_i, K) ``output_i @ F`` (None without
            ``readout``, or when projecting), for each block in turn.
        """
        count, length, channels = tokens.shape
        heads = self.num_heads
        batch = query_blocks[0].shape[0]
        if 2 * heads * count * length >= (batch + count) * self.internal_dim:
            attended = self.forward(torch.cat(query_blocks, 1), tokens, values)
            sizes = [block.shape[1] for block in residual_blocks]
            for residual, update in zip(residual_blocks, attended.split(sizes, 1)):
                yield residual + update, None
            return
        keys = self.k_proj(tokens).view(count, length, heads, -1)
        keys = keys * keys.shape[-1] ** -0.5
        pixel_weights = torch.einsum("nthd,hdc->nhtc", keys, self._head_weights(self.q_proj))
        score_bias = torch.einsum("nthd,hd->nht", keys, self.q_proj.bias.view(heads, -1))
        head_values = self.v_proj(values).view(count, length, heads, -1)
        out_weight = self.out_proj.weight.view(channels, heads, -1)
        mixed_values = torch.einsum("nthd,chd->nhtc", head_values, out_weight)
        mixed_values = (mixed_values + self.out_proj.bias / heads).reshape(count, -1, channels)
        # B = 1: one (N * H * T, C) matrix meets the shared image.
        pixel_weights = pixel_weights.reshape(batch, -1, channels)
        score_bias = score_bias.reshape(batch, -1, 1)
        readout_blocks, readout_values = [None] * len(query_blocks), None
        if readout is not None:
            readout_blocks, readout_values = readout[0], mixed_values @ readout[1]
        for queries, residual, readout_block in zip(query_blocks, residual_blocks, readout_blocks):
            scores = torch.baddbmm(score_bias, pixel_weights, queries.mT)
            weights = _softmax(scores.view(count, heads, length, -1), dim=-2)
            weights = weights.view(count, heads * length, -1).mT
            if readout_block is not None and in_place:
                readout_block = readout_block.baddbmm_(weights, readout_values)
            elif readout_block is not None:
                readout_block = torch.baddbmm(readout_block, weights, readout_values)
            if in_place:
                yield residual.baddbmm_(weights, mixed_values), readout_block
            else:
                yield torch.baddbmm(residual, weights, mixed_values), readout_block


def _softmax(scores: Tensor, dim: int) -> Tensor:
    """Softmax along ``dim`` (max-subtracted), computed in float32 or wider, in the input dtype."""
    dtype = torch.promote_types(scores.dtype, torch.float32)
    return torch.softmax(scores, dim=dim, dtype=dtype).to(scores.dtype)
