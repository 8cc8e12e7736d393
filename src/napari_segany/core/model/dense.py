"""Dense (linear) layers whose float32 CPU products run on oneDNN where that is faster.

torch's CPU ``F.linear`` in float32 calls MKL's ``sgemm``, which on AMD processors runs
its AVX2 code even where the CPU has AVX-512 (measured on a 2-core AMD EPYC with
``avx512f``: 183-209 GFLOP/s); oneDNN's matmul picks its kernel from the CPU's
features and reached 417-461 GFLOP/s on the same products (4096 x 384 x 1536 and
alike), the same float32 arithmetic in another summation order (as any two BLAS
libraries). :func:`linear` sends a product there when all of these hold:

- torch has the oneDNN linear (``torch.ops.mkldnn._linear_pointwise``, x86-64 builds)
  and it passed a one-time check against ``F.linear`` in this process;
- the input and the weight are float32 CPU tensors and no autograd is recorded
  (oneDNN's op has no backward) and no CPU autocast is active (autocast rewrites only
  ``F.linear``; bf16 products already run on oneDNN);
- there are at least :data:`MIN_ROWS` input rows (below that the call overhead of
  ~15 us outweighs the product: 19 vs 6 us for one 256-wide token);
- the environment variable ``SEGANY_ONEDNN`` is not ``0`` (read at the one-time check;
  for comparing the two kernels, or as a way out should oneDNN misbehave somewhere).

Everything else is ``F.linear``. :class:`Linear` is an ``nn.Linear`` (same parameters
and state-dict keys) whose forward is :func:`linear`.
"""

from __future__ import annotations

import os
import platform

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MIN_ROWS", "Linear", "attention", "linear", "onednn_linear_enabled", "uses_onednn"]

# Query rows per piece of :func:`attention` (scores of 512 x 4096 keys: 8 MiB, in L3;
# measured per head, 4096 keys x 96: 2.5 ms per 512 rows, 4.3 per 1024, 26 per 2048).
_QUERY_ROWS = 512

# Input rows from which oneDNN is used (measured, 2 threads: 0.33x at 1 row, 0.47x at
# 8, 2.3x at 64 rows of 256 -> 2048).
MIN_ROWS = 64

_ENABLED: bool | None = None  # None: not checked yet


def onednn_linear_enabled() -> bool:
    """Whether float32 CPU linears may run on oneDNN in this process (checked once:
    the op exists, and it equals ``F.linear`` on a small product)."""
    global _ENABLED
    if _ENABLED is None:
        _ENABLED = _self_check()
    return _ENABLED


def _self_check() -> bool:
    if os.environ.get("SEGANY_ONEDNN", "1") == "0":
        return False
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False  # not measured elsewhere (ARM builds use other BLAS paths)
    if not (
        torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    ):
        return False
    generator = torch.Generator().manual_seed(0)
    x, weight, bias = (
        torch.randn(*shape, generator=generator) for shape in ((96, 40), (24, 40), (24,))
    )
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        try:
            got = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        except (RuntimeError, TypeError, NotImplementedError):
            return False
        want = F.linear(x, weight, bias)
    return bool(torch.allclose(got, want, rtol=1e-5, atol=1e-5))


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def uses_onednn(x: Tensor, weight: Tensor, rows: int | None = None) -> bool:
    """Whether :func:`linear` computes ``x`` (..., K) times ``weight`` (N, K) on oneDNN:
    the module docstring's conditions, with ``rows`` (default: ``x``'s rows, all axes
    but the last) against :data:`MIN_ROWS`."""
    if rows is None:
        rows = x.numel() // x.shape[-1] if x.dim() >= 2 and x.shape[-1] else 0
    return (
        rows >= MIN_ROWS
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not _autocast_on()
        and onednn_linear_enabled()
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``: (..., K) x (N, K) [+ (N,)] -> (..., N), on oneDNN
    when the module docstring's conditions hold."""
    if uses_onednn(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(d)) v`` of (B, heads, L, d) tensors,
    as ``F.scaled_dot_product_attention`` without mask or dropout.

    On the CPU without autograd, in float32 or bfloat16 (where oneDNN is enabled), two
    shapes take faster paths than torch's kernel (whose GEMMs go through MKL, or are
    not faster in bf16 than in fp32):

    - long attentions (at least 4 x :data:`_QUERY_ROWS` queries): per head, two oneDNN
      products :data:`_QUERY_ROWS` queries at a time (SAM 2.1-T's global blocks,
      4 heads x 4096 tokens x 96, 2 threads: fp32 180 -> 125 ms per block; bf16 109 ms
      by plain matmuls -> 50 ms; SAM 2.1-B+'s 8 x 4096 x 56 bf16: 272 -> 81 ms);
    - many short bf16 ones (windows): batched matmuls (1024 windows x 64 tokens x 96:
      29 -> 12 ms; 100 x 196 x 96: 20 -> 8 ms, 1 thread).

    Anything else is torch's kernel.
    """
    if not _fast_attention_applies(query, key, value):
        return F.scaled_dot_product_attention(query, key, value)
    if query.shape[-2] >= 4 * _QUERY_ROWS and key.shape[-2] >= MIN_ROWS:
        return _attention_by_heads(query, key, value)
    if query.dtype == torch.bfloat16:
        scores = torch.matmul(query * query.shape[-1] ** -0.5, key.transpose(-1, -2))
        return torch.matmul(torch.softmax(scores, dim=-1), value)
    return F.scaled_dot_product_attention(query, key, value)


def _fast_attention_applies(query: Tensor, key: Tensor, value: Tensor) -> bool:
    dtype = query.dtype
    return (
        dtype in (torch.float32, torch.bfloat16)
        and key.dtype == value.dtype == dtype
        and query.device.type == "cpu"
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value)))
        and not (dtype == torch.float32 and _autocast_on())
        and onednn_linear_enabled()
    )


def _attention_by_heads(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """:func:`attention` as per-head oneDNN products, a piece of queries at a time; the
    (rows, Lk) scores of one piece are the only large temporary (softmax in place:
    SAM 2.1-B+'s global attention peaked 59 -> 43 MiB). The result is a (B, heads, L,
    d_v) view of a (B, L, heads, d_v) tensor: merging the heads back is free."""
    count, heads, length = query.shape[:3]
    out = query.new_empty(count, length, heads, value.shape[-1]).transpose(1, 2)
    scale = query.shape[-1] ** -0.5
    for index in range(query.shape[0] * query.shape[1]):
        batch, head = divmod(index, query.shape[1])
        keys = key[batch, head].contiguous()  # (Lk, d): the "weight" of q k^T
        values_t = value[batch, head].t().contiguous()  # (d_v, Lk): of weights v
        for start in range(0, query.shape[-2], _QUERY_ROWS):
            rows = query[batch, head, start : start + _QUERY_ROWS] * scale
            scores = torch.ops.mkldnn._linear_pointwise(rows, keys, None, "none", [], "")
            torch.ops.aten._softmax.out(scores, -1, False, out=scores)  # in place
            out[batch, head, start : start + _QUERY_ROWS] = torch.ops.mkldnn._linear_pointwise(
                scores, values_t, None, "none", [], ""
            )
    return out


class Linear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear` (same parameters and state-dict keys)."""

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_features) -> (..., out_features)."""
        return linear(x, self.weight, self.bias)
