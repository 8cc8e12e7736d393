"""The two-way transformer for few prompt tokens, with its image side never formed.

For a prompt, the transformer's image side (N pixels x C channels) changes only in its
image-to-token attentions: each adds ``A @ U`` (A: (N, H*T) attention weights over the
T tokens of H heads, U: (H*T, C) mixed values) and a layer norm follows. Written out,
before block l the image is

    X_l = s_l * E_l + cols_l @ rows_l

with ``E_l = X0 P G_0 ... P G_(l-1)`` a prompt-independent base (X0: embedding plus
dense prompt embedding, P: centring over channels, G_i: ``norm4`` gain of block i),
``s_l`` (N,) the product of the norms' per-pixel ``1 / std``, and small per-prompt
factors ``cols`` (N, R) and ``rows`` (R, C), R = l (H T + 1) (the ``+ 1``: each norm's
bias; ``cols`` is kept transposed, (R, N), the layout attention weights come in).
Everything the transformer reads from its image is ``X_l @ W`` for a fixed W:
``E_l @ W`` is computed once per plane (:func:`project_plane`) and the rest costs an
(N, R) product instead of an (N, C) one. A norm's statistics come from the same
factors: ``|Z P|^2 = s^2 |E P|^2 + 2 s <cols, E P rows^T> + <cols, cols (rows P rows^T)>``,
where ``E P rows^T`` is again a per-plane product (each row group is a per-head
combination of a fixed basis: ``out_proj`` columns and biases carried through the
norms) times small per-prompt coefficients. The decoder's first upscaling reads
``X_L @ F`` the same way, a block of pixels at a time.

:func:`implicit_is_cheaper` says when this beats the blockwise path of
:mod:`.transformer` (few tokens against a wide embedding: SAM's 256 channels, not the
built-in model's 128). Results equal the blockwise path's to float rounding (the
products are associated differently), not bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .attention import ProjectedAttention
from .dense import linear, uses_onednn

if TYPE_CHECKING:
    from .transformer import ImageTokens, TwoWayTransformer

__all__ = ["PlaneProjections", "attend_implicit", "implicit_is_cheaper", "project_plane"]

# The implicit path runs many small products (K = R columns) that reach a lower
# fraction of the machine's GEMM speed than the blockwise path's wide ones: it is
# taken only when its multiply-adds are at most this fraction of the other's.
_COST_MARGIN = 0.6


@dataclass
class BlockBase:
    """Per-plane products of one attention stage with its base image ``E_l``.

    Attributes
    ----------
    keys : Tensor
        (H, d, N) ``(E_l + pe) @ W_k^T`` of the token-to-image attention by head, or
        (H, d, 2 N) ``E_l @ W_k^T`` then ``pe @ W_k^T`` where ``E_l`` is scaled per
        pixel (after the first block) and the encoding must be kept apart.
    values : Tensor
        (H, N, d) ``E_l @ W_v^T``.
    queries : Tensor or None
        As ``keys`` for the image-to-token attention's queries (None for the final
        attention, which has none).
    sq_norm : Tensor or None
        (N,) ``|E_l P|^2`` per pixel.
    cross : Tensor or None
        (k, N) ``basis @ (E_l P)^T``: every row basis alive in this block against the
        centred base (see :func:`project_plane`).
    """

    keys: Tensor
    values: Tensor
    queries: Tensor | None = None
    sq_norm: Tensor | None = None
    cross: Tensor | None = None


@dataclass
class PlaneProjections:
    """Everything prompt-independent that :func:`attend_implicit` reads, for one plane.

    Attributes
    ----------
    blocks : list of BlockBase
        One per two-way block.
    final : BlockBase
        The final token-to-image attention's keys and values.
    readout : Tensor
        (N, K) ``E_L @ F``, the last base times the first upscaling's weight.
    """

    blocks: list[BlockBase]
    final: BlockBase
    readout: Tensor


@dataclass
class _Image:
    """A prompt set's image as ``scale * E_l + cols @ rows`` (module docstring).

    ``scale`` (B, 1, N), ``cols_t`` (B, R, N) (``cols`` transposed) and ``rows``
    (B, R, C) are None before the first update; ``values`` holds each past
    image-to-token attention's per-head values (B, T, H, d), the coefficients of its
    rows in the fixed basis.
    """

    scale: Tensor | None = None
    cols_t: Tensor | None = None
    rows: Tensor | None = None
    values: list[Tensor] = field(default_factory=list)


def implicit_is_cheaper(
    channels: int, heads: int, tokens: int, depth: int, readout_width: int
) -> bool:
    """Whether :func:`attend_implicit` needs clearly fewer multiply-adds per prompt.

    Counts the image-sized products of both paths, per pixel and prompt, for
    ``tokens`` tokens (T) of ``heads`` heads (H), ``channels`` (C), ``depth`` blocks and
    a first upscaling to ``readout_width`` (K) values.
    """
    width = heads * tokens
    blockwise = width * (2 * channels + readout_width)  # first block: scores, update
    blockwise += (depth - 1) * width * (4 * channels + readout_width) + 2 * width * channels
    rows, implicit = 0, 0
    for index in range(depth):
        implicit += (3 * rows * width if index else 0) + (rows + width) ** 2
        rows += width + 1
    implicit += 2 * rows * width + rows * readout_width
    return implicit <= _COST_MARGIN * blockwise


def _heads(weight: Tensor, image: Tensor, pe: Tensor, apart: bool, heads: int) -> Tensor:
    """``(image + pe) @ weight^T`` as (H, d, N), or with ``apart`` image's then pe's,
    (H, d, 2 N); ``image``, ``pe`` (N, C), ``weight`` (H d, C)."""
    if not apart:
        return (weight @ (image + pe).T).view(heads, -1, image.shape[0])
    both = weight @ torch.cat([image, pe]).T
    return both.view(heads, -1, 2 * image.shape[0])


def _attention_base(
    attention: ProjectedAttention, base: Tensor, pe: Tensor, first: bool
) -> tuple[Tensor, Tensor]:
    """Keys (:class:`BlockBase`) and values of a token-to-image stage."""
    heads = attention.num_heads
    keys = _heads(attention.k_proj.weight, base, pe, not first, heads)
    values = attention.v_proj.weight @ base.T  # (H d, N)
    return keys, values.view(heads, -1, base.shape[0]).transpose(1, 2).contiguous()


def project_plane(
    transformer: TwoWayTransformer, image: ImageTokens, readout_weight: Tensor
) -> PlaneProjections:
    """The per-plane products of :func:`attend_implicit` (no autograd).

    Parameters
    ----------
    transformer : TwoWayTransformer
    image : ImageTokens
        A shared (B = 1) prepared image side: embedding plus dense prompt embedding,
        and its positional encoding (:meth:`TwoWayTransformer.prepare_image`).
    readout_weight : Tensor
        (C, K) the first upscaling as a matmul weight.

    Returns
    -------
    PlaneProjections
    """
    layers, final = transformer.layers, transformer.final_attn_token_to_image
    image, image_pe = torch.cat(image.blocks, 1)[0], torch.cat(image.pe_blocks, 1)[0]
    base, basis, blocks = image, None, []
    for index, block in enumerate(layers):
        first = index == 0
        keys, values = _attention_base(block.cross_attn_token_to_image, base, image_pe, first)
        to_tokens = block.cross_attn_image_to_token
        queries = _heads(to_tokens.q_proj.weight, base, image_pe, not first, to_tokens.num_heads)
        # Rows an update can add: out_proj's columns (per head) and its bias.
        own = torch.cat([to_tokens.out_proj.weight.T, to_tokens.out_proj.bias[None]])
        basis = own if basis is None else torch.cat([basis, own])
        centred = base - base.mean(-1, keepdim=True)
        sq_norm, cross = centred.square().sum(-1), basis @ centred.T
        blocks.append(BlockBase(keys, values, queries, sq_norm, cross))
        norm = block.norm4
        base = centred * norm.weight
        basis = torch.cat([(basis - basis.mean(-1, keepdim=True)) * norm.weight, norm.bias[None]])
    keys, values = _attention_base(final, base, image_pe, False)
    return PlaneProjections(blocks, BlockBase(keys, values), base @ readout_weight)


def _image_scores(queries: Tensor, base: Tensor, weight: Tensor, image: _Image) -> Tensor:
    """``(X + pe) @ W^T`` against per-head queries: (B, H, T, N) scores.

    ``queries`` (B, T, H, d) already scaled; ``base`` the per-plane product
    (:class:`BlockBase` ``keys`` or ``queries``); ``weight`` (H d, C) the projection
    the image goes through.
    """
    count, length, heads, width = queries.shape
    by_head = queries.permute(2, 0, 1, 3).reshape(heads, count * length, width)
    products = torch.bmm(by_head, base).view(heads, count, length, -1).transpose(0, 1)
    if image.scale is None:  # the first block: E_0 is not scaled, pe is included
        scores = products.contiguous()  # no copy for one prompt set
    else:
        pixels = products.shape[-1] // 2
        scores = products.new_empty(count, heads, length, pixels)
        torch.addcmul(
            products[..., pixels:], products[..., :pixels], image.scale[:, None], out=scores
        )
    if image.rows is not None:
        row_keys = (image.rows @ weight.T).view(count, -1, heads, width)  # (B, R, H, d)
        # (B, H, T, d) @ (B, H, d, R): matmul, not einsum (less overhead at these sizes)
        row_scores = torch.matmul(queries.transpose(1, 2), row_keys.permute(0, 2, 3, 1))
        row_scores = row_scores.reshape(count, heads * length, -1)
        scores += torch.bmm(row_scores, image.cols_t).view(scores.shape)
    return scores


def _tokens_to_image(
    attention: ProjectedAttention, tokens: Tensor, base: BlockBase, image: _Image
) -> Tensor:
    """Token-to-image attention of tokens (B, T, C) on an implicit image: (B, T, C)."""
    count, length, _ = tokens.shape
    heads = attention.num_heads
    queries = attention.q_proj(tokens).view(count, length, heads, -1)
    queries = queries * queries.shape[-1] ** -0.5
    weights = torch.softmax(
        _image_scores(queries, base.keys, attention.k_proj.weight, image), -1
    )  # (B, H, T, N); the key bias adds a per-row constant, which softmax ignores
    scaled = weights if image.scale is None else weights * image.scale[:, None]
    by_head = scaled.transpose(0, 1).reshape(heads, count * length, -1)
    pooled = torch.bmm(by_head, base.values).view(heads, count, length, -1).permute(1, 2, 0, 3)
    if image.rows is not None:
        row_weights = torch.bmm(weights.view(count, heads * length, -1), image.cols_t.mT)
        row_values = (image.rows @ attention.v_proj.weight.T).view(
            count, -1, heads, pooled.shape[-1]
        )
        row_pooled = torch.matmul(  # (B, H, T, R) @ (B, H, R, d)
            row_weights.view(count, heads, length, -1), row_values.transpose(1, 2)
        )
        pooled = pooled + row_pooled.transpose(1, 2)
    # Attention weights sum to 1 over the pixels: the value bias passes through.
    return attention.out_proj(pooled.reshape(count, length, -1) + attention.v_proj.bias)


def _image_to_tokens(
    attention: ProjectedAttention,
    norm: nn.LayerNorm,
    key_tokens: Tensor,
    value_tokens: Tensor,
    base: BlockBase,
    image: _Image,
) -> _Image:
    """Image-to-token attention and the norm after it: the next implicit image.

    ``key_tokens`` (B, T, C) tokens plus their encoding, ``value_tokens`` (B, T, C).
    """
    count, length, channels = key_tokens.shape
    heads = attention.num_heads
    keys = attention.k_proj(key_tokens).view(count, length, heads, -1)
    keys = keys * keys.shape[-1] ** -0.5
    scores = _image_scores(keys, base.queries, attention.q_proj.weight, image)
    bias = (keys * attention.q_proj.bias.view(heads, -1)).sum(-1).transpose(1, 2)  # (B, H, T)
    weights = torch.softmax(scores + bias[..., None], dim=2)  # over the T tokens
    new_cols_t = weights.view(count, heads * length, -1)  # (B, H T, N)
    values = attention.v_proj(value_tokens).view(count, length, heads, -1)
    out_weight = attention.out_proj.weight.view(channels, heads, -1)
    new_rows = torch.matmul(values.transpose(1, 2), out_weight.permute(1, 2, 0))  # (B, H, T, C)
    new_rows = (new_rows + attention.out_proj.bias / heads).reshape(count, -1, channels)
    cols_t = new_cols_t if image.cols_t is None else torch.cat([image.cols_t, new_cols_t], 1)
    rows = new_rows if image.rows is None else torch.cat([image.rows, new_rows], 1)
    all_values = [*image.values, values]
    sq_norm = _updated_sq_norm(base, image, cols_t, rows, all_values, heads)
    inv_std = torch.rsqrt(sq_norm / channels + norm.eps)  # (B, 1, N)
    centred_rows = (rows - rows.mean(-1, keepdim=True)) * norm.weight
    bias_rows = norm.bias.expand(count, 1, channels)
    return _Image(
        scale=inv_std if image.scale is None else image.scale * inv_std,
        cols_t=torch.cat([cols_t * inv_std, torch.ones_like(inv_std)], 1),  # + norm bias
        rows=torch.cat([centred_rows, bias_rows], 1),
        values=all_values,
    )


def _updated_sq_norm(
    base: BlockBase,
    image: _Image,
    cols_t: Tensor,
    rows: Tensor,
    values: list[Tensor],
    heads: int,
) -> Tensor:
    """``|Z P|^2`` per pixel, (B, 1, N), of ``Z = scale * E + cols @ rows`` (module docstring).

    Row groups, in order: each past update (H T rows: per-head ``values`` times the
    basis' ``out_proj`` columns, plus its bias / H), then its norm's bias (1 row); the
    basis in ``base.cross`` has the same order (H d + 1 rows, then 1).
    """
    count, length, _, width = values[0].shape
    pixels = cols_t.shape[-1]
    group_basis, group_rows = heads * width + 2, heads * length + 1
    linear = None
    for index, group_values in enumerate(values):
        start, first_row = index * group_basis, index * group_rows
        by_head = base.cross[start : start + heads * width].view(heads, width, pixels)
        coefficients = group_values.permute(2, 0, 1, 3).reshape(heads, count * length, width)
        cross = torch.bmm(coefficients, by_head).view(heads, count, length, pixels)
        cross = cross.transpose(0, 1).reshape(count, heads * length, pixels)
        group_cols = cols_t[:, first_row : first_row + heads * length]
        term = (group_cols * cross).sum(1, keepdim=True)
        # The update's bias row part, out_proj.bias / H in each of its rows:
        term += group_cols.sum(1, keepdim=True) * (base.cross[start + heads * width] / heads)
        if index + 1 < len(values):  # the norm bias row after this update
            bias_row = cols_t[:, first_row + heads * length]  # (B, N)
            term += (bias_row * base.cross[start + heads * width + 1])[:, None]
        linear = term if linear is None else linear + term
    centred = rows - rows.mean(-1, keepdim=True)
    quadratic = (torch.bmm(centred @ centred.mT, cols_t) * cols_t).sum(1, keepdim=True)
    if image.scale is None:
        return base.sq_norm + 2 * linear + quadratic
    return image.scale.square() * base.sq_norm + 2 * image.scale * linear + quadratic


def attend_implicit(
    transformer: TwoWayTransformer,
    plane: PlaneProjections,
    token_embedding: Tensor,
    readout: tuple[Tensor, Tensor],
    readout_pixels: int,
    outputs: list[int],
) -> tuple[Tensor, Iterator[Tensor]]:
    """The two-way transformer on a plane from :func:`project_plane`.

    Parameters
    ----------
    transformer : TwoWayTransformer
    plane : PlaneProjections
    token_embedding : Tensor
        (B, T, C) output and prompt tokens; also their positional encoding.
    readout : (Tensor, Tensor)
        (C, K) weight and (K,) bias: the first upscaling as a matmul.
    readout_pixels : int
        Pixels per block of the readout.
    outputs : list of int
        The tokens read afterwards (the decoder's IoU token and the chosen masks'
        tokens): only they go through the final attention, in this order.

    Returns
    -------
    tokens : Tensor
        (B, ``len(outputs)``, C) processed tokens.
    readout : iterator of Tensor
        The output image times the readout weight plus its bias, (B, r, K) blocks of
        ``readout_pixels`` pixels, computed as they are read (each stays in the CPU
        cache for the upscaling that follows).
    """
    layers, final = transformer.layers, transformer.final_attn_token_to_image
    tokens, image = token_embedding, _Image()
    for block, base in zip(layers, plane.blocks):
        tokens = block.attend_tokens_to_tokens(tokens, token_embedding)
        attended = _tokens_to_image(
            block.cross_attn_token_to_image, tokens + token_embedding, base, image
        )
        tokens = block.finish_tokens(tokens, attended)
        to_tokens = block.cross_attn_image_to_token
        image = _image_to_tokens(
            to_tokens, block.norm4, tokens + token_embedding, tokens, base, image
        )
    tokens = tokens[:, outputs]
    queries = tokens + token_embedding[:, outputs]
    attended = _tokens_to_image(final, queries, plane.final, image)
    tokens = transformer.norm_final_attn(tokens + attended)
    return tokens, _readout(plane, image, *readout, readout_pixels)


def _readout(
    plane: PlaneProjections, image: _Image, weight: Tensor, bias: Tensor, pixels: int
) -> Iterator[Tensor]:
    """``X_L @ weight + bias`` in (B, r, K) blocks of ``pixels`` pixels.

    Every block is written into the same buffer: a block is valid until the next one
    is read (the decoder's upscaling consumes each at once).
    """
    row_readout = image.rows @ weight  # (B, R, K)
    total = plane.readout.shape[0]
    buffer = row_readout.new_empty(row_readout.shape[0], min(pixels, total), weight.shape[1])
    for start in range(0, total, pixels):
        stop = min(start + pixels, total)
        block = buffer[:, : stop - start]
        torch.addcmul(bias, image.scale[:, :, start:stop].mT, plane.readout[start:stop], out=block)
        cols = image.cols_t[:, :, start:stop].mT  # (B, r, R)
        if uses_onednn(cols[0], row_readout[0]):  # the faster float32 GEMM (.dense)
            for index in range(block.shape[0]):
                block[index].add_(linear(cols[index], row_readout[index].T))
            yield block
        else:
            yield block.baddbmm_(cols, row_readout)
