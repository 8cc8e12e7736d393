"""Dense layers: oneDNN float32 products where they pay, equal to torch's own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from napari_segany.core.model import dense

needs_onednn = pytest.mark.skipif(
    not dense.onednn_linear_enabled(), reason="torch without oneDNN's linear (not x86-64)"
)


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@needs_onednn
def test_routing_follows_rows_dtype_autograd_and_autocast():
    weight = _random(32, 48)
    many, few = _random(4, 16, 48), _random(2, 3, 48)
    with torch.inference_mode():
        assert dense.uses_onednn(many, weight)
        assert not dense.uses_onednn(few, weight)  # 6 rows: call overhead dominates
        assert not dense.uses_onednn(many.double(), weight.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not dense.uses_onednn(many, weight)  # autocast must see F.linear
    trainable = weight.clone().requires_grad_()
    assert not dense.uses_onednn(many, trainable)  # autograd: oneDNN has no backward
    with torch.no_grad():
        assert dense.uses_onednn(many, trainable)


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_equals_torch_on_strided_inputs(with_bias):
    x = _random(3, 100, 7, 40, seed=1)[:, ::2].transpose(1, 2)  # not contiguous
    weight, bias = _random(24, 40, seed=2), _random(24, seed=3) if with_bias else None
    with torch.inference_mode():
        got = dense.linear(x, weight, bias)
    want = F.linear(x, weight, bias)
    assert got.shape == want.shape == (3, 7, 50, 24)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_linear_module_trains_like_nn_linear():
    """With autograd the layer is torch's: same output and the same gradients."""
    ours, theirs = dense.Linear(40, 24), torch.nn.Linear(40, 24)
    theirs.load_state_dict(ours.state_dict())
    x = _random(128, 40, seed=4)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)


@pytest.mark.parametrize("queries", [2048 + 300, 100])  # pieces with a short last one; short
def test_attention_equals_torchs_kernel(queries):
    query = _random(2, 3, queries, 32, seed=5)
    key, value = _random(2, 3, 700, 32, seed=6), _random(2, 3, 700, 16, seed=7)
    with torch.inference_mode():
        got = dense.attention(query, key, value)
        want = F.scaled_dot_product_attention(query, key, value)
    assert got.shape == want.shape == (2, 3, queries, 16)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 4, 2100, 56), (300, 1, 64, 96)])  # global; windows
def test_bf16_attention_is_as_close_to_fp32_as_torchs_bf16_kernel(shape):
    query, key, value = (_random(*shape, seed=seed) for seed in (8, 9, 10))
    with torch.inference_mode():
        want = F.scaled_dot_product_attention(query, key, value)
        halves = [t.bfloat16() for t in (query, key, value)]
        ours, torchs = dense.attention(*halves), F.scaled_dot_product_attention(*halves)
    assert ours.dtype == torch.bfloat16 and ours.shape == want.shape

    def error(got: torch.Tensor) -> float:
        return float((got.float() - want).norm() / want.norm())

    assert error(ours) < 1.5 * error(torchs) + 1e-3


def test_the_environment_switch_turns_onednn_off():
    code = "from napari_segany.core.model import dense; print(dense.onednn_linear_enabled())"
    env = {**os.environ, "SEGANY_ONEDNN": "0"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
