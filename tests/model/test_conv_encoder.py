"""The built-in model's CNN encoder: shapes, self-describing checkpoints, loading."""

from __future__ import annotations

from dataclasses import replace

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


def test_detail_strides_are_read_from_the_weights_and_old_checkpoints_still_load(tmp_path):
    torch.manual_seed(0)
    base = {"widths": (8, 16, 24), "stage_dilations": ((1,), (1, 2))}
    kwargs = {"prompt_embed_dim": 32, "decoder_num_heads": 2, "decoder_mlp_dim": 64}
    with_detail = Architecture("d", "conv", {**base, "detail_strides": (2, 4)}, **kwargs)
    state = build_sam(with_detail, image_size=64).state_dict()
    # stride 2: 8 channels x 4 x 4 pixels per cell; stride 4: 16 x 2 x 2
    assert state["image_encoder.detail2.weight"].shape == (32, 128, 1, 1)
    assert state["image_encoder.detail4.weight"].shape == (32, 64, 1, 1)
    assert detect_architecture(state).encoder_options == with_detail.encoder_options
    # a checkpoint without detail weights (the first built-in models) is read as one
    without = Architecture("plain", "conv", base, **kwargs)
    plain = build_sam(without, image_size=64).state_dict()
    assert "detail_strides" not in detect_architecture(plain).encoder_options


def test_the_detail_path_feeds_the_embedding():
    """Zeroing the detail projection changes the embedding: the stride-4 features
    reach it, which is the point of the path."""
    torch.manual_seed(0)
    conv_s = ARCHITECTURES["conv_s"]
    options = {**conv_s.encoder_options, "detail_strides": (4,)}
    model = build_sam(replace(conv_s, encoder_kwargs=options))
    pixels = torch.randn(1, 3, 512, 512)
    with torch.inference_mode():
        before = model.encode(pixels)
        model.image_encoder.detail4.weight.zero_()
        model.image_encoder.detail4.bias.zero_()
        after = model.encode(pixels)
    assert (before - after).abs().mean() > 0.05


def test_detail_strides_other_than_2_and_4_are_refused():
    with pytest.raises(ValueError, match="detail_strides"):
        build_sam(
            Architecture(
                "bad",
                "conv",
                {"detail_strides": (8,)},
                prompt_embed_dim=32,
                decoder_num_heads=2,
                decoder_mlp_dim=64,
            ),
            image_size=64,
        )


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
