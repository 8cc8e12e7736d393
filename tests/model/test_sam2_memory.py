"""SAM 2.1's memory encoder and memory attention against Meta's ``sam2`` modules."""

from __future__ import annotations

import pytest
import torch
from tests.oracle.sam2_upstream import reference_sam2

from napari_segany.core.model.sam2_memory import MemoryAttention, MemoryEncoder


@pytest.fixture(scope="module")
def reference():
    return reference_sam2("tiny", seed=31)


def _part(module: torch.nn.Module, prefix: str, reference) -> torch.nn.Module:
    state = {
        key[len(prefix) :]: value
        for key, value in reference.state_dict().items()
        if key.startswith(prefix)
    }
    module.load_state_dict(state, strict=True)  # the official keys and shapes
    return module.eval()


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_memory_encoder_equals_the_reference(reference):
    ours = _part(MemoryEncoder(), "memory_encoder.", reference)
    generator = torch.Generator().manual_seed(32)
    features = torch.randn(2, 256, 64, 64, generator=generator)
    logits = 8 * torch.randn(2, 1, 1024, 1024, generator=generator)
    with torch.inference_mode():
        expected = reference.memory_encoder(features, logits)
        memory, position = ours(features, logits)
        probabilities = ours(features, torch.sigmoid(logits), masks_are_probabilities=True)[0]
    assert memory.shape == position.shape == (2, 64, 64, 64)
    _close(memory, expected["vision_features"])
    _close(position, expected["vision_pos_enc"][0])
    _close(probabilities, expected["vision_features"])


@pytest.mark.parametrize("pointers", [0, 16])
def test_memory_attention_equals_the_reference(reference, pointers):
    """Two frames of memory (2 x 4096 tokens, rotated per frame) and, optionally, 16
    object-pointer tokens that are not rotated."""
    ours = _part(MemoryAttention(), "memory_attention.", reference)
    generator = torch.Generator().manual_seed(33)
    current, current_pos = (torch.randn(1, 4096, 256, generator=generator) for _ in range(2))
    memory, memory_pos = (
        torch.randn(1, 2 * 4096 + pointers, 64, generator=generator) for _ in range(2)
    )
    with torch.inference_mode():
        expected = reference.memory_attention(
            curr=[current.transpose(0, 1)],
            curr_pos=[current_pos.transpose(0, 1)],
            memory=memory.transpose(0, 1),
            memory_pos=memory_pos.transpose(0, 1),
            num_obj_ptr_tokens=pointers,
        ).transpose(0, 1)
        got = ours(current, current_pos, memory, memory_pos, pointers)
    assert got.shape == (1, 4096, 256)
    _close(got, expected)


def test_every_size_has_the_same_memory_keys():
    """The memory parts are the same shapes in all four sizes (only the trunk grows)."""
    ours = {
        **{f"memory_encoder.{k}": v.shape for k, v in MemoryEncoder().state_dict().items()},
        **{f"memory_attention.{k}": v.shape for k, v in MemoryAttention().state_dict().items()},
    }
    for size in ("small", "base_plus", "large"):
        theirs = {
            key: value.shape
            for key, value in reference_sam2(size).state_dict().items()
            if key.startswith(("memory_encoder.", "memory_attention."))
        }
        assert theirs == ours, size
