"""Build upstream SAM / MobileSAM models with random weights, as test oracles.

Import this module (it installs :mod:`tests.oracle.standins`) and use
:func:`random_upstream_sam` to get an upstream model in eval mode whose every
parameter -- including the zero-initialised position embeddings and relative
position tables -- is random, so that a wrong key mapping cannot hide.
"""

from __future__ import annotations

import pytest
import torch

from . import standins

standins.install()

segment_anything = pytest.importorskip("segment_anything")
mobile_sam = pytest.importorskip("mobile_sam")


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Fill every parameter and float buffer of ``module`` with seeded noise, in place.

    LayerNorm weights are set near one so activations stay in a sane range.
    """
    generator = torch.Generator().manual_seed(seed)
    norm_weights = {
        f"{prefix}.weight" if prefix else "weight"
        for prefix, sub in module.named_modules()
        if "norm" in type(sub).__name__.lower() or type(sub).__name__.startswith("LayerNorm")
    }
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator) * scale
            if name in norm_weights or name.endswith("running_var"):
                noise = noise.abs() + 1.0
            elif name.endswith("positional_encoding_gaussian_matrix"):
                noise = torch.randn(tensor.shape, generator=generator)
            tensor.copy_(noise.to(tensor.dtype))
    return module.eval()


def random_upstream_sam(arch: str, seed: int = 0):
    """Upstream model for ``arch`` in {"vit_b", "vit_l", "vit_h", "vit_t"}, random weights."""
    if arch == "vit_t":
        model = mobile_sam.sam_model_registry["vit_t"](checkpoint=None)
    else:
        model = segment_anything.sam_model_registry[arch](checkpoint=None)
    return randomize_(model, seed=seed)


def matched_pair(arch: str, seed: int = 0, scale: float = 0.05):
    """(upstream model, our ``Sam``) with the same random weights; the upstream model
    keeps SAM's pixel normalisation (``randomize_`` would scramble those buffers)."""
    from napari_segany.core.image import PIXEL_MEAN, PIXEL_STD
    from napari_segany.core.model.build import build_sam

    package = mobile_sam if arch == "vit_t" else segment_anything
    reference = randomize_(package.sam_model_registry[arch](checkpoint=None), seed, scale)
    reference.pixel_mean.copy_(torch.tensor(PIXEL_MEAN).view(3, 1, 1))
    reference.pixel_std.copy_(torch.tensor(PIXEL_STD).view(3, 1, 1))
    ours = build_sam(arch)
    ours.load_state_dict(reference.state_dict())
    return reference, ours
