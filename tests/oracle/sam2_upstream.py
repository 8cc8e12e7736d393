"""The reference SAM 2.1 (Meta's ``sam2`` package) as a test oracle.

``sam2`` is installed without its dependencies (``scripts/_env.sh``): torchvision does
not import beside our CPU torch build, and the model code needs only torch, hydra
and iopath. Models are built from the package's own SAM 2.1 configs, so a wrong size
table on our side cannot be copied into the reference.
"""

from __future__ import annotations

from importlib import resources

import pytest
import torch

from .upstream import randomize_

sam2 = pytest.importorskip("sam2")
hydra_utils = pytest.importorskip("hydra.utils")
omegaconf = pytest.importorskip("omegaconf")

CONFIG_NAMES = {
    "tiny": "sam2.1_hiera_t.yaml",
    "small": "sam2.1_hiera_s.yaml",
    "base_plus": "sam2.1_hiera_b+.yaml",
    "large": "sam2.1_hiera_l.yaml",
}


def reference_config(size: str):
    """The ``model`` node of the official SAM 2.1 config of ``size``."""
    path = resources.files("sam2") / "configs" / "sam2.1" / CONFIG_NAMES[size]
    return omegaconf.OmegaConf.load(str(path)).model


def reference_image_encoder(size: str, seed: int = 0) -> torch.nn.Module:
    """Meta's SAM 2.1 image encoder (Hiera trunk + FPN neck) of ``size``, every
    parameter random (:func:`randomize_`), in eval mode."""
    encoder = hydra_utils.instantiate(reference_config(size).image_encoder)
    return randomize_(encoder, seed=seed).eval()


# The image predictor's decoder settings (sam2.build_sam's overrides for images).
IMAGE_PREDICTOR_DECODER_ARGS = {
    "dynamic_multimask_via_stability": True,
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}


def reference_sam2(size: str, seed: int = 0) -> torch.nn.Module:
    """Meta's whole SAM 2.1 model (``SAM2Base``, memory parts included) of ``size``,
    configured as ``build_sam2`` does for images, every parameter random."""
    config = reference_config(size)
    config.sam_mask_decoder_extra_args = dict(IMAGE_PREDICTOR_DECODER_ARGS)
    model = hydra_utils.instantiate(config, _recursive_=True)
    return randomize_(model, seed=seed).eval()


def reference_image_features(model, pixels: torch.Tensor):
    """As ``SAM2ImagePredictor.set_image`` after its transforms: (image embedding,
    [stride-4, stride-8] high-resolution features)."""
    backbone = model.forward_image(pixels)
    _, vision_feats, _, sizes = model._prepare_backbone_features(backbone)
    vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    maps = [feat.permute(1, 2, 0).view(1, -1, *size) for feat, size in zip(vision_feats, sizes)]
    return maps[-1], maps[:-1]


def reference_decode(
    model, embedding, high_res, points_xy, labels, boxes_xyxy, mask_input, multimask
):
    """As ``SAM2ImagePredictor._predict`` on model-frame prompts: (low-res logits, IoU
    scores). Box corners (labels 2, 3) go before the points."""
    points = None if points_xy is None else (points_xy, labels)
    if boxes_xyxy is not None:
        corners = boxes_xyxy.reshape(-1, 2, 2)
        corner_labels = torch.tensor([[2, 3]], dtype=torch.int).repeat(len(corners), 1)
        if points is None:
            points = (corners, corner_labels)
        else:
            points = (torch.cat([corners, points[0]], 1), torch.cat([corner_labels, points[1]], 1))
    sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
    batched = points is not None and points[0].shape[0] > 1
    logits, scores, _, object_scores = model.sam_mask_decoder(
        image_embeddings=embedding,
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=batched,
        high_res_features=high_res,
    )
    return logits, scores, object_scores


def reference_image_predictor(model):
    """Meta's ``SAM2ImagePredictor`` around ``model`` (default thresholds, no hole
    filling), with the torchvision stand-ins of :mod:`.standins`."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    return SAM2ImagePredictor(model)


# The video predictor's settings (sam2.build_sam.build_sam2_video_predictor with its
# post-processing), plus corrections kept as conditioning frames (our rule, see
# napari_segany.core.volume.memory). Hole filling (fill_hole_area) needs the package's
# CUDA extension and is skipped without it; it is off here and in our code.
VIDEO_PREDICTOR_OVERRIDES = {
    "binarize_mask_from_pts_for_mem_enc": True,
    "fill_hole_area": 0,
    "add_all_frames_to_correct_as_cond": True,
}


def reference_video_predictor(size: str, seed: int = 0, image_size: int = 1024):
    """Meta's ``SAM2VideoPredictor`` of ``size`` (random weights) on ``image_size``
    frames, configured as ``build_sam2_video_predictor`` does."""
    config = reference_config(size)
    config._target_ = "sam2.sam2_video_predictor.SAM2VideoPredictor"
    config.sam_mask_decoder_extra_args = dict(IMAGE_PREDICTOR_DECODER_ARGS)
    config.image_size = image_size
    for key, value in VIDEO_PREDICTOR_OVERRIDES.items():
        config[key] = value
    model = hydra_utils.instantiate(config, _recursive_=True)
    _float_memories(model.memory_attention)
    return randomize_(model, seed=seed).eval()


def _float_memories(attention: torch.nn.Module) -> None:
    """The reference stores memories in bfloat16 and relies on the object pointers'
    float32 to promote them when concatenated; a frame with no pointer (an object
    prompted only on later frames, tracked forward) then reaches float32 layers with
    bfloat16 memories and fails outside autocast. Give it float32 memories, as the
    concatenation does whenever there is a pointer."""
    forward = attention.forward

    def float_forward(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        return forward(curr, memory.float(), curr_pos, memory_pos.float(), num_obj_ptr_tokens)

    attention.forward = float_forward


def reference_video_state(predictor, frames: torch.Tensor, height: int, width: int, monkeypatch):
    """``predictor.init_state`` on already normalised (N, 3, S, S) frames of an
    (height, width) video (the reference reads JPEG folders; here it gets our pixels)."""
    import sam2.sam2_video_predictor as video_module

    monkeypatch.setattr(
        video_module, "load_video_frames", lambda **_: (frames, height, width), raising=True
    )
    return predictor.init_state(video_path="frames")
