"""Oracle tests: our prompt encoder + mask decoder equal upstream SAM's for random weights.

Upstream's ``prompt_encoder`` + ``mask_decoder`` are called exactly as its predictor's
``predict_torch`` calls them; ours through :meth:`Sam.decode`.
"""

from __future__ import annotations

import copy

import pytest
import torch
from tests.oracle import upstream
from torch import nn

from napari_segany.core.errors import InputError, PromptError
from napari_segany.core.model.mask_decoder import MaskDecoder
from napari_segany.core.model.prompt_encoder import PromptEncoder
from napari_segany.core.model.sam import Sam

EMBED_DIM = 256
GRID = 64


def build_models():
    """(upstream prompt encoder, upstream mask decoder, our Sam) with the same random weights."""
    modeling = upstream.segment_anything.modeling
    theirs_prompt = modeling.PromptEncoder(
        embed_dim=EMBED_DIM,
        image_embedding_size=(GRID, GRID),
        input_image_size=(1024, 1024),
        mask_in_chans=16,
    )
    theirs_decoder = modeling.MaskDecoder(
        transformer_dim=EMBED_DIM,
        transformer=modeling.TwoWayTransformer(
            depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8
        ),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    upstream.randomize_(theirs_prompt, seed=1, scale=0.1)
    upstream.randomize_(theirs_decoder, seed=2, scale=0.1)
    ours = Sam(nn.Identity(), PromptEncoder(), MaskDecoder()).eval()
    ours.prompt_encoder.load_state_dict(theirs_prompt.state_dict(), strict=True)
    ours.mask_decoder.load_state_dict(theirs_decoder.state_dict(), strict=True)
    return theirs_prompt, theirs_decoder, ours


@pytest.fixture(scope="module")
def models():
    return build_models()


@pytest.fixture(scope="module")
def embedding():
    return torch.randn(1, EMBED_DIM, GRID, GRID, generator=torch.Generator().manual_seed(3))


def _upstream_decode(prompt, decoder, embedding, points, labels, boxes, mask, multimask):
    sparse, dense = prompt(
        points=None if points is None else (points, labels), boxes=boxes, masks=mask
    )
    return decoder(
        image_embeddings=embedding,
        image_pe=prompt.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


def _points(*rows):
    """[(x, y, label), ...] per prompt -> (N, P, 2) float, (N, P) int."""
    coords = torch.tensor([[[x, y] for x, y, _ in row] for row in rows], dtype=torch.float32)
    labels = torch.tensor([[label for *_, label in row] for row in rows], dtype=torch.int64)
    return coords, labels


ONE_POSITIVE = _points([(412.0, 300.5, 1)])
POSITIVE_NEGATIVE = _points([(412.0, 300.5, 1), (600.0, 250.0, 0), (100.0, 901.0, 1)])
BOX = torch.tensor([[120.0, 200.0, 640.0, 700.0]])
THREE_BOXES = torch.tensor(
    [[120.0, 200.0, 640.0, 700.0], [0.0, 0.0, 1023.0, 1023.0], [500.0, 10.0, 530.0, 80.0]]
)
MASK = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(4)) * 5
CASES = {
    "one positive point": (*ONE_POSITIVE, None, None),
    "positive and negative points": (*POSITIVE_NEGATIVE, None, None),
    "box": (None, None, BOX, None),
    "box and points": (*POSITIVE_NEGATIVE, BOX, None),
    "three boxes": (None, None, THREE_BOXES, None),
    "three point prompts with padding": (
        *_points(
            [(10.0, 20.0, 1), (0.0, 0.0, -1)],
            [(900.0, 20.0, 1), (800.0, 40.0, 0)],
            [(512.0, 512.0, 0), (1000.0, 1000.0, 1)],
        ),
        None,
        None,
    ),
    "mask refinement with a point": (*ONE_POSITIVE, None, MASK),
    "mask refinement with a box": (None, None, BOX, MASK),
    # 16 tokens: the attentions project the image instead of reassociating.
    "eleven points": (
        *_points([(40.0 + 90.0 * i, 1000.0 - 85.0 * i, i % 2) for i in range(11)]),
        None,
        None,
    ),
    # N * T = 35 prompt tokens: the first block's token-to-image attention projects.
    "five point prompts": (
        *_points(*[[(30.0 + 180.0 * i, 500.0 + 80.0 * i, 1)] for i in range(5)]),
        None,
        None,
    ),
}


def _assert_close(ours: torch.Tensor, theirs: torch.Tensor, rtol: float) -> None:
    assert ours.shape == theirs.shape
    scale = theirs.abs().max().item()
    error = (ours - theirs).abs().max().item()
    assert error <= rtol * scale, f"max error {error:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize("case", list(CASES))
@torch.no_grad()
def test_decode_matches_upstream(models, embedding, case, multimask):
    theirs_prompt, theirs_decoder, ours = models
    points, labels, boxes, mask = CASES[case]
    expected_logits, expected_iou = _upstream_decode(
        theirs_prompt, theirs_decoder, embedding, points, labels, boxes, mask, multimask
    )
    logits, iou = ours.decode(embedding, points, labels, boxes, mask, multimask)
    count = max(t.shape[0] for t in (points, boxes, mask) if t is not None)
    assert logits.shape == (count, 3 if multimask else 1, 256, 256)
    assert expected_logits.abs().max() > 1e-2  # a meaningful comparison
    _assert_close(logits, expected_logits, rtol=1e-4)
    torch.testing.assert_close(iou, expected_iou, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_dense_positional_encoding_matches_upstream_and_follows_weights(models):
    theirs_prompt, _, _ = models
    ours = PromptEncoder()
    ours.load_state_dict(theirs_prompt.state_dict())
    first = ours.dense_positional_encoding()
    assert first.shape == (1, EMBED_DIM, GRID, GRID)
    _assert_close(first, theirs_prompt.get_dense_pe(), rtol=1e-5)
    assert ours.dense_positional_encoding() is first  # cached

    # load_state_dict copies in place: the cache must notice.
    other = upstream.randomize_(
        upstream.segment_anything.modeling.PromptEncoder(256, (GRID, GRID), (1024, 1024), 16),
        seed=9,
    )
    ours.load_state_dict(other.state_dict())
    _assert_close(ours.dense_positional_encoding(), other.get_dense_pe(), rtol=1e-5)

    # .to(dtype) replaces the buffers: new dtype, same values.
    ours.to(torch.float64)
    as_double = ours.dense_positional_encoding()
    assert as_double.dtype == torch.float64
    _assert_close(as_double.float(), other.get_dense_pe(), rtol=1e-5)


def test_decode_rejects_inconsistent_prompts(models, embedding):
    *_, ours = models
    points, labels = ONE_POSITIVE
    with pytest.raises(PromptError, match="same number N"):
        ours.decode(embedding, points, labels, THREE_BOXES, None, True)
    with pytest.raises(PromptError, match="together"):
        ours.decode(embedding, points, None, None, None, True)
    with pytest.raises(PromptError, match=r"\(N, P\)"):
        ours.decode(embedding, points, labels[:, :0], None, None, True)
    with pytest.raises(PromptError, match="mask_input"):
        ours.decode(embedding, points, labels, None, MASK[..., :128, :128], True)
    with pytest.raises(InputError, match="one image"):
        ours.decode(embedding.expand(2, -1, -1, -1), points, labels, None, None, True)


def _fresh_pair(models):
    """Copies of the fixture's models: (upstream prompt encoder, decoder, our new Sam)."""
    theirs_prompt, theirs_decoder, _ = models
    theirs_decoder = copy.deepcopy(theirs_decoder)
    ours = Sam(nn.Identity(), PromptEncoder(), MaskDecoder()).eval()
    ours.prompt_encoder.load_state_dict(theirs_prompt.state_dict())
    ours.mask_decoder.load_state_dict(theirs_decoder.state_dict())
    return theirs_prompt, theirs_decoder, ours


def _check_against_upstream(theirs_prompt, theirs_decoder, ours, embedding, prompt):
    points, labels, boxes, mask = prompt
    expected_logits, expected_iou = _upstream_decode(
        theirs_prompt, theirs_decoder, embedding, points, labels, boxes, mask, True
    )
    logits, iou = ours.decode(embedding, points, labels, boxes, mask, True)
    _assert_close(logits, expected_logits, rtol=1e-4)
    torch.testing.assert_close(iou, expected_iou, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_repeated_prompts_reuse_the_image_side_exactly(models):
    """Interactive clicks on one image: the reused (projected and read-out) image side gives
    upstream's answer on every call, for new prompts too, and equal prompts equal results."""
    theirs_prompt, theirs_decoder, ours = _fresh_pair(models)
    embedding = torch.randn(1, EMBED_DIM, GRID, GRID, generator=torch.Generator().manual_seed(5))
    embedding = embedding * 2 + 0.5  # channel means away from zero stress the read-out
    prompts = [CASES["one positive point"], CASES["box and points"], CASES["three boxes"]]
    prompts.append(CASES["mask refinement with a point"])  # its own image side
    prompts.append(CASES["one positive point"])
    for prompt in prompts:
        _check_against_upstream(theirs_prompt, theirs_decoder, ours, embedding, prompt)
    cached = ours.mask_decoder._image_cache.image
    assert cached.projected is not None and cached.readout_blocks is not None
    first, again = (ours.decode(embedding, *prompts[1], True) for _ in range(2))
    for result, repeated in zip(first, again):
        assert torch.equal(result, repeated)


@torch.no_grad()
def test_reused_image_side_follows_embedding_and_weight_changes(models):
    theirs_prompt, theirs_decoder, ours = _fresh_pair(models)
    embedding = torch.randn(1, EMBED_DIM, GRID, GRID, generator=torch.Generator().manual_seed(6))
    prompt = CASES["positive and negative points"]
    for _ in range(2):  # fill the cache, then project
        _check_against_upstream(theirs_prompt, theirs_decoder, ours, embedding, prompt)

    embedding.mul_(-1.5)  # in place: same tensor object, new contents
    _check_against_upstream(theirs_prompt, theirs_decoder, ours, embedding, prompt)

    upstream.randomize_(theirs_decoder, seed=11, scale=0.1)
    ours.mask_decoder.load_state_dict(theirs_decoder.state_dict())  # in-place copies
    _check_against_upstream(theirs_prompt, theirs_decoder, ours, embedding, prompt)

    other = torch.randn(1, EMBED_DIM, GRID, GRID, generator=torch.Generator().manual_seed(7))
    _check_against_upstream(theirs_prompt, theirs_decoder, ours, other, prompt)


def test_gradients_flow_through_decode_as_upstream(models):
    """Training: decode is differentiable and its gradients equal upstream's."""
    theirs_prompt, theirs_decoder, ours = _fresh_pair(models)
    ours.train()
    embedding = torch.randn(1, EMBED_DIM, GRID, GRID, generator=torch.Generator().manual_seed(8))
    points, labels, boxes, mask = CASES["mask refinement with a box"]
    theirs_embedding = embedding.clone().requires_grad_(True)
    ours_embedding = embedding.clone().requires_grad_(True)

    logits, iou = _upstream_decode(
        theirs_prompt, theirs_decoder, theirs_embedding, points, labels, boxes, mask, True
    )
    (logits.square().mean() + iou.sum()).backward()
    logits, iou = ours.decode(ours_embedding, points, labels, boxes, mask, True)
    (logits.square().mean() + iou.sum()).backward()

    assert ours_embedding.grad is not None and ours_embedding.grad.abs().max() > 0
    _assert_close(ours_embedding.grad, theirs_embedding.grad, rtol=1e-3)
    theirs_parameters = dict(theirs_decoder.named_parameters())
    for name in (
        "transformer.layers.0.cross_attn_image_to_token.q_proj.weight",
        "transformer.layers.1.cross_attn_token_to_image.k_proj.weight",
        "transformer.final_attn_token_to_image.v_proj.bias",
        "transformer.layers.1.norm4.weight",
        "output_upscaling.0.weight",
        "output_hypernetworks_mlps.2.layers.0.weight",
    ):
        ours_grad = ours.mask_decoder.get_parameter(name).grad
        assert ours_grad is not None, name
        _assert_close(ours_grad, theirs_parameters[name].grad, rtol=1e-3)
    assert ours.mask_decoder._image_cache is None  # nothing cached under autograd


@torch.no_grad()
def test_transformer_and_block_forward_match_upstream(models):
    """The modules' own forward (full tensors, per-prompt images) equals upstream's."""
    _, theirs_decoder, ours = models
    generator = torch.Generator().manual_seed(9)
    image = torch.randn(2, EMBED_DIM, GRID, GRID, generator=generator)
    image_pe = torch.randn(1, EMBED_DIM, GRID, GRID, generator=generator)
    tokens = torch.randn(2, 7, EMBED_DIM, generator=generator)
    theirs = theirs_decoder.transformer(image, image_pe, tokens)
    for mine, expected in zip(ours.mask_decoder.transformer(image, image_pe, tokens), theirs):
        _assert_close(mine, expected, rtol=1e-4)

    pixels = image.flatten(2).transpose(1, 2)
    pixels_pe = image_pe.flatten(2).transpose(1, 2)
    theirs_block = theirs_decoder.transformer.layers[1]
    expected = theirs_block(queries=tokens, keys=pixels, query_pe=tokens, key_pe=pixels_pe)
    mine = ours.mask_decoder.transformer.layers[1](tokens, pixels, tokens, pixels_pe)
    for got, want in zip(mine, expected):
        _assert_close(got, want, rtol=1e-4)
