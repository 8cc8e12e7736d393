"""Plane masks as prompts in a model's frame, and N objects decoded with their own prompts.

:func:`mask_to_logits` turns (H, W) masks into ``mask_input`` logits placed exactly as
the model's frame places the plane (SAM: resized so the long side fills the frame,
zero-padded; SAM 2: squeezed to the square); :func:`decode_objects` decodes N objects
at once, object ``i`` from its own point, box and mask (``Predictor.predict`` gives every
box the same points). Used by :mod:`.refine_labels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .embeddings import Embedding
from .prompts import to_model_frame
from .results import SegmentResult


@dataclass(frozen=True)
class MaskFrame:
    """How a plane lies in the model's low-resolution mask frame.

    Attributes
    ----------
    original_hw : (H, W) of the plane.
    input_hw : (h', w') of the plane in the model frame (before padding).
    image_size : side of the square model frame.
    low_res_hw : (h, w) of the low-resolution masks (``4 * Embedding.grid_hw``).
    square : the plane is squeezed to fill the frame (SAM 2), not resized and padded.
    """

    original_hw: tuple[int, int]
    input_hw: tuple[int, int]
    image_size: int
    low_res_hw: tuple[int, int]
    square: bool = False

    @classmethod
    def of(cls, embedding: Embedding, image_size: int, square: bool = False) -> MaskFrame:
        """The frame of a plane's :class:`Embedding` on a model of ``image_size``."""
        low_res = tuple(4 * side for side in embedding.grid_hw)
        hw = tuple(embedding.original_hw)
        return cls(hw, tuple(embedding.input_hw), int(image_size), low_res, bool(square))


def mask_to_logits(masks_hw: np.ndarray, frame: MaskFrame, logit: float = 8.0) -> np.ndarray:
    """Plane masks -> ``mask_input`` logits placed as the model's frame places the plane.

    SAM's rule: the mask is resized to the plane's size in the frame (h', w'), zero-padded
    to the square frame and averaged over each low-resolution cell (4 x 4 frame pixels
    for SAM); SAM 2's: resized (area-averaged) straight to the low-resolution grid. The
    covered fraction ``f`` of each cell becomes ``logit * (2 f - 1)``: ``+logit`` inside,
    ``-logit`` outside and on the padding.

    Parameters
    ----------
    masks_hw : numpy.ndarray, (N, H, W) bool
    frame : MaskFrame
    logit : float

    Returns
    -------
    numpy.ndarray, (N, 1, h, w) float32
        ``(h, w) = frame.low_res_hw``.
    """
    masks = torch.from_numpy(np.ascontiguousarray(masks_hw, dtype=np.float32))[:, None]
    low_h, low_w = frame.low_res_hw
    if frame.square:
        fraction = _resize(masks, (low_h, low_w))
    else:
        in_frame = _resize(masks, frame.input_hw)
        pad = (0, frame.image_size - frame.input_hw[1], 0, frame.image_size - frame.input_hw[0])
        in_frame = F.pad(in_frame, pad)
        cell = (frame.image_size // low_h, frame.image_size // low_w)
        fraction = F.avg_pool2d(in_frame, cell, cell)
    return (logit * (2.0 * fraction - 1.0)).numpy().astype(np.float32)


def _resize(masks: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """(N, 1, H, W) float masks -> (N, 1, h, w): area mean when shrinking, bilinear
    (as the model's frame does with the image) when enlarging."""
    if tuple(masks.shape[-2:]) == tuple(size_hw):
        return masks
    shrinking = size_hw[0] <= masks.shape[-2] and size_hw[1] <= masks.shape[-1]
    if shrinking:
        return F.interpolate(masks, size_hw, mode="area")
    return F.interpolate(masks, size_hw, mode="bilinear", align_corners=False)


def decode_objects(
    predictor,
    embedding: Embedding,
    points_yx: np.ndarray | None,
    boxes_yxyx: np.ndarray | None,
    mask_input: np.ndarray | None,
    multimask: bool = False,
) -> SegmentResult:
    """Decode N objects at once, each from its own point, box and mask prompt.

    ``Predictor.predict`` gives every box the same points; here object ``i`` gets point
    ``i`` (one positive click), box ``i`` and mask ``i`` in one decoder call, with the
    predictor's frame rules (the one (y, x) -> (x, y) flip, its mask upscaling).

    Parameters
    ----------
    predictor : Predictor
    embedding : Embedding
        The plane's.
    points_yx : numpy.ndarray, (N, 1, 2)
        One positive point per object, (row, col) pixel indices.
    boxes_yxyx : numpy.ndarray, (N, 4)
    mask_input : numpy.ndarray, (N, 1, h, w)
        From :func:`mask_to_logits`.
    multimask : bool

    Returns
    -------
    SegmentResult
        Batched: masks (N, K, H, W), scores (N, K), logits (N, K, h, w).
    """
    from .predictor import square_masks, upscale_masks

    model, device = predictor.model, predictor.device
    frame = (embedding.input_hw, embedding.original_hw)
    as_tensor = {"dtype": torch.float32, "device": device}
    points_xy = labels = masks_in = None
    if points_yx is not None:
        points_xy = torch.as_tensor(to_model_frame(points_yx, *frame), **as_tensor)
        labels = torch.ones(points_xy.shape[:2], dtype=torch.int64, device=device)
    boxes_xyxy = None
    if boxes_yxyx is not None:
        boxes_xyxy = torch.as_tensor(to_model_frame(boxes_yxyx, *frame), **as_tensor)
    if mask_input is not None:
        masks_in = torch.as_tensor(mask_input, **as_tensor)
    with torch.inference_mode():
        logits, scores = model.decode(
            embedding.features.to(device), points_xy, labels, boxes_xyxy, masks_in, multimask
        )
        if model.square_frame:
            masks = square_masks(logits, embedding.original_hw)
        else:
            masks = upscale_masks(logits, *frame, model.image_size)
    limit = model.returned_logit_limit
    if limit is not None:
        logits = logits.clamp(-limit, limit)
    return SegmentResult(masks, scores.float().cpu().numpy(), logits.float().cpu().numpy())
