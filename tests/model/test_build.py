"""The architecture registry and builder: checkpoint layout and a full-model oracle."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tests.oracle import upstream

from napari_segany.core.errors import InputError
from napari_segany.core.model.build import Architecture, build_sam
from napari_segany.core.model.sam import Sam


def _layout(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def _upstream_builder(arch: str):
    package = upstream.mobile_sam if arch == "vit_t" else upstream.segment_anything
    return package.sam_model_registry[arch]


UPSTREAM_ARCHITECTURES = ("vit_b", "vit_h", "vit_l", "vit_t")  # conv_s is ours only


@pytest.mark.parametrize("arch", UPSTREAM_ARCHITECTURES)
def test_state_dict_layout_matches_upstream_checkpoint(arch):
    with torch.device("meta"):
        ours = build_sam(arch)
    if arch == "vit_t":  # upstream TinyViT calls .item() in __init__: no meta device
        theirs = _upstream_builder(arch)()
    else:
        with torch.device("meta"):
            theirs = _upstream_builder(arch)()
    assert isinstance(ours, Sam)
    assert not ours.training
    assert _layout(ours) == _layout(theirs)


def test_build_sam_gives_normalisation_buffers_outside_the_checkpoint():
    with torch.device("meta"):
        model = build_sam("vit_b")
    keys = model.state_dict().keys()
    assert "pixel_mean" not in keys and "pixel_std" not in keys
    model = build_sam("vit_t")
    theirs = upstream.mobile_sam.sam_model_registry["vit_t"]()
    torch.testing.assert_close(model.pixel_mean, theirs.pixel_mean)
    torch.testing.assert_close(model.pixel_std, theirs.pixel_std)
    assert model.pixel_mean.shape == (3, 1, 1)


def _tiny_vit_architecture() -> Architecture:
    return Architecture(
        "tiny_test",
        "vit",
        {
            "patch_size": 16,
            "embed_dim": 32,
            "depth": 2,
            "num_heads": 2,
            "window_size": 4,
            "global_attn_indexes": [1],
        },
        decoder_depth=1,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    )


@torch.no_grad()
def test_custom_architecture_builds_a_working_small_model():
    arch = _tiny_vit_architecture()
    assert arch.encoder_options["global_attn_indexes"] == (1,)
    assert hash(arch) == hash(_tiny_vit_architecture())
    model = build_sam(arch, image_size=256)
    embedding = model.encode(torch.randn(1, 3, 256, 256))
    assert embedding.shape == (1, 256, 16, 16)
    points_xy = torch.tensor([[[100.0, 30.0]], [[5.0, 250.0]]])
    logits, iou = model.decode(embedding, points_xy, torch.ones(2, 1), None, None, True)
    assert logits.shape == (2, 3, 64, 64) and iou.shape == (2, 3)
    assert not torch.equal(logits[0], logits[1])  # the prompt matters
    with pytest.raises(InputError, match="pixels of shape"):
        model.encode(torch.randn(1, 3, 1024, 1024))


def test_builder_rejects_bad_requests():
    with pytest.raises(InputError, match="vit_b"):
        build_sam("vit_x")
    with pytest.raises(InputError, match="multiple of 16"):
        build_sam("vit_t", image_size=1000)
    with pytest.raises(InputError, match="image_size"):
        dataclasses.replace(_tiny_vit_architecture(), encoder_kwargs={"img_size": 512})
    with pytest.raises(InputError, match="unknown encoder"):
        Architecture("bad", "resnet")


@pytest.fixture(scope="module")
def mobile_sam_pair():
    theirs = upstream.random_upstream_sam("vit_t", seed=5)
    ours = build_sam("vit_t")
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


@pytest.mark.slow  # two TinyViT passes at 1024 x 1024: ~20 s on 2 busy cores
@torch.no_grad()
def test_full_mobile_sam_matches_upstream(mobile_sam_pair):
    theirs, ours = mobile_sam_pair
    generator = torch.Generator().manual_seed(6)
    pixels = torch.randn(1, 3, 1024, 1024, generator=generator)
    expected_embedding = theirs.image_encoder(pixels)
    embedding = ours.encode(pixels)
    assert embedding.shape == (1, 256, 64, 64)
    assert _relative_error(embedding, expected_embedding) < 1e-4

    points_xy = torch.tensor([[[300.0, 420.0], [700.0, 100.0]]])
    labels = torch.tensor([[1, 0]])
    boxes_xyxy = torch.tensor([[200.0, 300.0, 800.0, 650.0]])
    for multimask in (True, False):
        sparse, dense = theirs.prompt_encoder(
            points=(points_xy, labels), boxes=boxes_xyxy, masks=None
        )
        expected_logits, expected_iou = theirs.mask_decoder(
            image_embeddings=expected_embedding,
            image_pe=theirs.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        logits, iou = ours.decode(embedding, points_xy, labels, boxes_xyxy, None, multimask)
        assert logits.shape == expected_logits.shape
        assert _relative_error(logits, expected_logits) < 1e-4
        torch.testing.assert_close(iou, expected_iou, rtol=1e-4, atol=1e-4)
