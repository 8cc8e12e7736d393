"""SAM 2.1's video step: one frame (slice) of one object, from its prompts or from the
memories of the frames around it.

What a frame of an object keeps (:class:`FrameState`): its low-resolution mask logits,
an *object pointer* (the decoder's mask token through ``obj_ptr_proj``; a learned
``no_obj_ptr`` where the model sees no object), its object score and, once encoded,
its *memory* (:class:`.sam2_memory.MemoryEncoder` of the frame's features and mask,
kept in bfloat16 as the reference keeps it).

- :func:`decode_frame`: the SAM heads on a frame's features (a prompted first frame:
  the image embedding as for images; any other frame: the features conditioned on
  memories by :func:`condition`). Where the object score says "no object" the mask
  is set to -1024 everywhere. With ``multimask`` the best-scored candidate is kept
  and its token makes the pointer, else the single mask's token.
- :func:`mask_as_frame`: a mask given by the user taken as the frame's output
  (logits +-10), its pointer decoded from the mask downsampled by ``mask_downsample``.
- :func:`encode_memory`: the memory of a frame: the mask binarised (prompted frames)
  or through a sigmoid (tracked frames), scaled by 20 and shifted by -10, encoded with
  the frame's features; a frame without the object adds ``no_obj_embed_spatial``.
- :func:`condition`: the frame's features attending to memories (up to
  :data:`MEMORY_FRAMES` frames: all prompted frames plus the six nearest tracked ones
  on the side it is tracked from, each with its temporal encoding
  ``maskmem_tpos_enc``) and to object pointers (those of prompted frames not ahead of
  it and of up to 15 tracked frames behind it, each split into four 64-channel tokens
  with a projected 1D sine encoding of its signed frame distance).

Parameter names are the official checkpoints' (``memory_encoder.*``,
``memory_attention.*``, ``maskmem_tpos_enc``, ``no_obj_ptr``, ``obj_ptr_proj.*``, ...),
so :func:`video_parts` loads them from the file's memory entries unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint_file import key_mismatches
from ..errors import CheckpointError
from .dense import Linear
from .fpn_neck import sine_position_encoding
from .mask_decoder import ReluMLP
from .sam2 import EMBED_DIM, Sam2, Sam2Features
from .sam2_memory import MemoryAttention, MemoryEncoder

__all__ = [
    "MAX_POINTERS",
    "MEMORY_FRAMES",
    "NO_OBJECT_LOGIT",
    "FrameState",
    "Sam2Video",
    "condition",
    "decode_frame",
    "encode_memory",
    "mask_as_frame",
    "video_parts",
]

MEMORY_FRAMES = 7  # num_maskmem: the prompted frames + 6 tracked ones
MAX_POINTERS = 16  # max_obj_ptrs_in_encoder
NO_OBJECT_LOGIT = -1024.0
MEMORY_DIM = 64
_MASK_SCALE, _MASK_BIAS = 20.0, -10.0  # logits of a given mask; memory encoder's mask scale


class Sam2Video(nn.Module):
    """The memory parts of a SAM 2.1 checkpoint (module docstring)."""

    def __init__(self, dim: int = EMBED_DIM, memory_dim: int = MEMORY_DIM) -> None:
        super().__init__()
        self.memory_encoder = MemoryEncoder(dim, memory_dim)
        self.memory_attention = MemoryAttention(dim, memory_dim)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(MEMORY_FRAMES, 1, 1, memory_dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, dim))  # training only; a key
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, dim))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, memory_dim))
        self.obj_ptr_proj = ReluMLP(dim, dim, dim, 3)
        self.obj_ptr_tpos_proj = Linear(dim, memory_dim)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)

    def pointer(self, token: Tensor, appearing: Tensor) -> Tensor:
        """(N, C) object pointers of (N, C) mask tokens; ``no_obj_ptr`` where
        ``appearing`` ((N, 1) bool) is False."""
        seen = appearing.to(token.dtype)
        return seen * self.obj_ptr_proj(token) + (1 - seen) * self.no_obj_ptr


def video_parts(model: Sam2) -> Sam2Video | None:
    """The video parts of a loaded SAM 2.1 model (built once, kept on the model), or
    None when its checkpoint held none (an image-only model).

    Raises
    ------
    CheckpointError
        When the memory entries do not match SAM 2.1's names and shapes.
    """
    state = getattr(model, "memory_state", None)
    if not state:
        return None
    built = getattr(model, "_video_parts", None)
    if built is None:
        built = Sam2Video()
        listed = key_mismatches(built.state_dict(), state)
        if listed:
            raise CheckpointError(
                f"The checkpoint's video (memory) entries are not SAM 2.1's ({listed}); "
                "use an official SAM 2.1 file, or propagate by projection with an image model."
            )
        built.load_state_dict(state, strict=True)
        built = built.to(model.device).eval()
        model._video_parts = built
    return built


@dataclass
class FrameState:
    """One object on one frame.

    Attributes
    ----------
    low_res : Tensor
        (1, 1, S/4, S/4) float32 mask logits.
    score : float
        The decoder's predicted IoU of the mask (1.0 for a given mask).
    pointer : Tensor
        (1, C) object pointer.
    object_score : Tensor
        (1, 1) object-score logit (> 0: the object is on the frame).
    memory : Tensor or None
        (1, 64, S/16, S/16) bfloat16 memory, once encoded.
    """

    low_res: Tensor
    score: float
    pointer: Tensor
    object_score: Tensor
    memory: Tensor | None = None


def raw_features(model: Sam2, features: Sam2Features) -> Tensor:
    """The frame's stride-16 features without the image path's ``no_mem_embed``."""
    return features.embedding - model.no_mem_embed.view(1, -1, 1, 1)


def _sparse(model: Sam2, points_xy: Tensor | None, labels: Tensor | None, box_xyxy):
    """The prompt tokens as the reference video model makes them: the box's corners,
    the points, one padding point (and a second one when there is no point at all)."""
    encoder = model.sam_prompt_encoder
    if points_xy is None:
        points_xy = torch.zeros(1, 0 if box_xyxy is not None else 1, 2, device=model.device)
        labels = torch.full(points_xy.shape[:2], -1, dtype=torch.int64, device=model.device)
    tokens = [encoder.embed_points(points_xy, labels, pad=True)]
    if box_xyxy is not None:
        tokens.insert(0, encoder.embed_boxes(box_xyxy))
    return torch.cat(tokens, dim=1)


def decode_frame(
    model: Sam2,
    video: Sam2Video,
    frame_features: Tensor,
    skips: tuple[Tensor, Tensor],
    points_xy: Tensor | None = None,
    labels: Tensor | None = None,
    box_xyxy: Tensor | None = None,
    mask_logits: Tensor | None = None,
    multimask: bool = False,
) -> FrameState:
    """The SAM heads on a frame (module docstring).

    Parameters
    ----------
    frame_features : Tensor
        (1, C, S/16, S/16): the image embedding (a first prompted frame), the memory-
        conditioned features (:func:`condition`) or the raw features (a given mask).
    skips : (Tensor, Tensor)
        ``Sam2Features.skips`` of the frame.
    points_xy, labels : Tensor, optional
        (1, P, 2) model-frame (x, y) and (1, P) labels (1 / 0).
    box_xyxy : Tensor, optional
        (1, 4) model-frame box.
    mask_logits : Tensor, optional
        (1, 1, S/4, S/4) logits fed to the prompt encoder.
    multimask : bool
    """
    encoder = model.sam_prompt_encoder
    dense = (
        encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        if mask_logits is None
        else encoder.embed_masks(mask_logits)
    )
    masks, scores, object_scores, tokens = model.sam_mask_decoder.decode_with_tokens(
        frame_features,
        encoder.dense_positional_encoding(),
        _sparse(model, points_xy, labels, box_xyxy),
        dense,
        multimask,
        skips,
    )
    appearing = object_scores > 0
    masks = torch.where(appearing[:, :, None, None], masks, NO_OBJECT_LOGIT).float()
    best = int(scores[0].argmax()) if multimask else 0
    pointer = video.pointer(tokens[:, best], appearing)
    return FrameState(masks[:, best : best + 1], float(scores[0, best]), pointer, object_scores)


def mask_as_frame(
    model: Sam2, video: Sam2Video, raw: Tensor, skips: tuple[Tensor, Tensor], mask: Tensor
) -> FrameState:
    """A given (1, 1, S, S) 0 / 1 mask as the frame's output (module docstring)."""
    mask = mask.float()
    logits = mask * _MASK_SCALE + _MASK_BIAS
    size = logits.shape[-1] // 4
    low_res = F.interpolate(logits, (size, size), mode="bilinear", antialias=True)
    decoded = decode_frame(model, video, raw, skips, mask_logits=video.mask_downsample(mask))
    seen = mask.flatten(1).gt(0).any(1, keepdim=True)
    pointer = torch.where(seen, decoded.pointer, video.no_obj_ptr)
    object_score = seen.float() * _MASK_SCALE + _MASK_BIAS
    return FrameState(low_res, 1.0, pointer, object_score)


def encode_memory(
    video: Sam2Video, raw: Tensor, state: FrameState, image_size: int, binarize: bool
) -> Tensor:
    """The (1, 64, h, w) bfloat16 memory of a frame (module docstring)."""
    high_res = F.interpolate(state.low_res, (image_size, image_size), mode="bilinear")
    mask = high_res.gt(0).float() if binarize else torch.sigmoid(high_res)
    memory, _ = video.memory_encoder(
        raw, mask * _MASK_SCALE + _MASK_BIAS, masks_are_probabilities=True
    )
    absent = state.object_score.le(0).float()[..., None, None]
    memory = memory + absent * video.no_obj_embed_spatial[..., None, None]
    return memory.to(torch.bfloat16)


def _sine_1d(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """(P,) positions -> (P, dim): sines then cosines at ``dim / 2`` frequencies."""
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=positions.device)
    periods = temperature ** (2 * torch.div(steps, 2, rounding_mode="floor") / half)
    angles = positions[:, None] / periods
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def condition(
    video: Sam2Video,
    raw: Tensor,
    memories: list[tuple[int, Tensor]],
    pointers: list[tuple[int, Tensor]],
    max_pointers: int,
) -> Tensor:
    """A frame's (1, C, h, w) features attending to memories and pointers.

    Parameters
    ----------
    raw : Tensor
        (1, C, h, w) features of the frame (:func:`raw_features`).
    memories : list of (int, Tensor)
        (temporal slot, (1, 64, h, w) memory): slot 0 for prompted frames, 1 for the
        farthest tracked frame to 6 for the nearest.
    pointers : list of (int, Tensor)
        (signed frame distance, (1, C) pointer).
    max_pointers : int
        ``min(frames in the stack, 16)``: distances are divided by one less.
    """
    channels, height, width = raw.shape[1:]
    tokens = raw.flatten(2).transpose(1, 2)
    position = sine_position_encoding(height, width, channels, raw.device)
    position = position.flatten(2).transpose(1, 2)
    memory_position = sine_position_encoding(height, width, MEMORY_DIM, raw.device)
    memory_position = memory_position.flatten(2).transpose(1, 2)
    keys, key_positions = [], []
    for slot, memory in memories:
        keys.append(memory.float().flatten(2).transpose(1, 2))
        key_positions.append(memory_position + video.maskmem_tpos_enc[MEMORY_FRAMES - slot - 1, 0])
    pointer_tokens = 0
    if pointers:
        distances = torch.tensor([d for d, _ in pointers], dtype=torch.float32, device=raw.device)
        encoded = video.obj_ptr_tpos_proj(_sine_1d(distances / (max_pointers - 1), channels))
        split = channels // MEMORY_DIM
        stacked = torch.cat([p for _, p in pointers]).reshape(-1, MEMORY_DIM)  # (P * 4, 64)
        keys.append(stacked[None])
        key_positions.append(encoded.repeat_interleave(split, dim=0)[None])
        pointer_tokens = stacked.shape[0]
    conditioned = video.memory_attention(
        tokens, position, torch.cat(keys, dim=1), torch.cat(key_positions, dim=1), pointer_tokens
    )
    return conditioned.transpose(1, 2).reshape(1, channels, height, width)
