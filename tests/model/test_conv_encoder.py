"""The built-in model's CNN encoder: shapes, self-describing checkpoints, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany.core.errors import CheckpointError
from napari_segany.core.loading import detect_architecture, detect_image_size, load_model
from napari_segany.core.model.build import ARCHITECTURES, Architecture, build_sam


def _randomise_norms(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial batch-norm statistics, so that a load that dropped them shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def test_embedding_shape_and_stride():
    model = build_sam("conv_s")
    assert model.image_size == 512
    assert ARCHITECTURES["conv_s"].embedding_stride == 8
    with torch.inference_mode():
        embedding = model.encode(torch.zeros(1, 3, 512, 512))
    assert embedding.shape == (1, 128, 64, 64)
    # the neck's layer norm: every cell normalised over channels
    assert torch.allclose(embedding.mean(dim=1), torch.zeros(1, 64, 64), atol=1e-4)


def test_checkpoint_round_trip_detects_architecture_and_input_size(tmp_path):
    torch.manual_seed(0)
    model = build_sam("conv_s")
    _randomise_norms(model, 1)
    path = tmp_path / "conv.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model(path, device="cpu")
    assert loaded.architecture == ARCHITECTURES["conv_s"]
    assert loaded.model.image_size == 512
    pixels = torch.randn(1, 3, 512, 512)
    with torch.inference_mode():
        assert torch.equal(model.eval().encode(pixels), loaded.model.encode(pixels))


def test_custom_widths_and_dilations_are_read_from_the_weights():
    custom = Architecture(
        "mine",
        "conv",
        {"widths": (8, 16, 24), "stage_dilations": ((1, 3), (2, 5, 1))},
        prompt_embed_dim=32,
        decoder_num_heads=2,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    state = build_sam(custom, image_size=256).state_dict()
    detected = detect_architecture(state)
    assert detected.encoder == "conv" and detected.name == "custom_conv"
    assert detected.encoder_options == custom.encoder_options
    assert detect_image_size(state) == 256


def test_a_conv_checkpoint_missing_a_stage_is_refused():
    state = build_sam("conv_s").state_dict()
    broken = {k: v for k, v in state.items() if not k.startswith("image_encoder.stages.1.")}
    with pytest.raises(CheckpointError, match="expected 2 stages"):
        detect_architecture(broken)


def test_decoding_works_at_the_conv_models_frame():
    model = build_sam("conv_s")
    embedding = torch.zeros(1, 128, 64, 64)
    points = torch.tensor([[[100.0, 200.0]]])
    with torch.inference_mode():
        logits, iou = model.decode(embedding, points, torch.ones(1, 1), None, None, True)
    assert logits.shape == (1, 3, 256, 256) and iou.shape == (1, 3)
    assert np.isfinite(logits.numpy()).all()
