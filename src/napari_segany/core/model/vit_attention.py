"""Attention of SAM's ViT image encoder on the CPU, without a full attention matrix.

See :mod:`.image_encoder` ("Speed") for why: queries are taken a few token rows at a
time into one reused logit buffer (:func:`chunked_attention`), and the decomposed
relative-position bias is folded into the GEMM where that is cheap (:func:`_fold_bias`).
Off the CPU, and under autograd, :func:`fused_attention` uses
``scaled_dot_product_attention`` with the bias as its mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["chunked_attention", "decomposed_rel_pos", "fused_attention", "relative_embeddings"]

#: Elements of one chunk's logit buffer on the CPU path (100 MB in fp32: 1/8 of a ViT-B
#: global block at 1024). On 2 idle cores 6M was ~5% faster (cache); with other
#: processes on the cores, each op's thread-pool round trip costs ms and 24-48M won.
SCORE_BUDGET = 24 << 20


def relative_embeddings(size: int, table: torch.Tensor) -> torch.Tensor:
    """Gather ``(size, size, head_dim)`` embeddings ``table[i - j + size - 1]``.

    ``table`` is ``(2 * size - 1, head_dim)``; ``i`` indexes query, ``j`` key positions.
    """
    if table.shape[0] != 2 * size - 1:
        raise InputError(
            f"relative position table has {table.shape[0]} rows, expected {2 * size - 1} "
            f"for {size} positions: the input size does not match the model's img_size"
        )
    index = torch.arange(size, device=table.device)
    return table[index[:, None] - index[None, :] + (size - 1)]


def decomposed_rel_pos(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of the decomposed relative-position bias.

    Parameters
    ----------
    q
        ``(N, h * w, head_dim)`` unscaled queries of an ``h x w`` token grid.
    rel_pos_h, rel_pos_w
        ``(2h - 1, head_dim)`` and ``(2w - 1, head_dim)`` tables.

    Returns
    -------
    bias_h, bias_w
        ``(N, h, w, h)`` and ``(N, h, w, w)``: the bias of query ``(i, j)`` and key
        ``(k, l)`` is ``bias_h[n, i, j, k] + bias_w[n, i, j, l]``.
    """
    h, w = hw
    grid = q.view(q.shape[0], h, w, q.shape[-1])
    emb_h = relative_embeddings(h, rel_pos_h.to(q.dtype))
    emb_w = relative_embeddings(w, rel_pos_w.to(q.dtype))
    return (
        torch.einsum("nhwc,hkc->nhwk", grid, emb_h),
        torch.einsum("nhwc,wkc->nhwk", grid, emb_w),
    )


def _fold_bias(q, k, bias_h, bias_w, scale):
    """Extend q by the bias terms and k by one-hot row/column indicators (see module doc)."""
    n, length, _ = q.shape
    h, w = bias_h.shape[1], bias_w.shape[2]
    eye_h = torch.eye(h, dtype=k.dtype, device=k.device)
    eye_w = torch.eye(w, dtype=k.dtype, device=k.device)
    rows = eye_h[:, None, :].expand(h, w, h).reshape(1, length, h).expand(n, -1, -1)
    cols = eye_w[None, :, :].expand(h, w, w).reshape(1, length, w).expand(n, -1, -1)
    q = torch.cat([q * scale, bias_h.reshape(n, length, h), bias_w.reshape(n, length, w)], -1)
    kt = torch.cat([k, rows, cols], -1).transpose(1, 2).contiguous()
    return q, kt


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias_h: torch.Tensor,
    bias_w: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """``softmax(scale * q k^T + bias) v`` without the full logit matrix (CPU path).

    ``q``, ``k``, ``v`` are ``(N, h * w, head_dim)``, ``bias_h``/``bias_w`` as returned
    by :func:`decomposed_rel_pos`. Returns ``(N, h * w, head_dim)`` in ``q``'s dtype.
    Uses in-place ops and ``out=``, so it is not differentiable.
    """
    n, length, _ = q.shape
    h, w = bias_h.shape[1], bias_w.shape[2]
    fold = h + w <= q.shape[-1]
    if fold:
        q, kt = _fold_bias(q, k, bias_h, bias_w, scale)
    else:
        kt = k.transpose(1, 2).contiguous()
    row_cost = w * length  # logits per query row of the grid, per batch entry
    if n * row_cost <= SCORE_BUDGET:
        n_per, rows_per = n, min(h, max(1, SCORE_BUDGET // (n * row_cost)))
    else:
        n_per, rows_per = max(1, SCORE_BUDGET // row_cost), 1
    out = v.new_empty(v.shape)
    buffer = q.new_empty(n_per * rows_per * row_cost)
    for n0 in range(0, n, n_per):
        batch = slice(n0, min(n, n0 + n_per))
        nb = batch.stop - n0
        for r0 in range(0, h, rows_per):
            r1 = min(h, r0 + rows_per)
            rows = slice(r0 * w, r1 * w)
            logits = buffer[: nb * (r1 - r0) * row_cost].view(nb, (r1 - r0) * w, length)
            if fold:
                torch.bmm(q[batch, rows], kt[batch], out=logits)
            else:
                grid = logits.view(nb, r1 - r0, w, h, w)
                torch.add(
                    bias_h[batch, r0:r1, :, :, None], bias_w[batch, r0:r1, :, None, :], out=grid
                )
                logits.baddbmm_(q[batch, rows], kt[batch], alpha=scale)
            torch.ops.aten._softmax.out(logits, -1, False, out=logits)
            # (bmm into a strided slice of out is 4x slower with 2+ threads in fp32)
            out[batch, rows] = torch.bmm(logits, v[batch])
    return out


def fused_attention(q, k, v, bias_h, bias_w, scale: float) -> torch.Tensor:
    """Same result as :func:`chunked_attention` via ``scaled_dot_product_attention``.

    Materialises the ``(N, L, L)`` bias; differentiable; the path for CUDA/MPS.
    """
    n, length, _ = q.shape
    bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(n, length, length)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
