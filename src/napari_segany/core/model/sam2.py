"""SAM 2.1 on single images: Hiera encoder + FPN neck, SAM's prompt encoder, SAM 2's
mask decoder.

As :mod:`.sam`, everything is in the model frame and in SAM's (x, y) convention; the
frame is the plane resized to ``image_size`` x ``image_size`` (no padding, aspect not
kept). Parameter names are those of the official checkpoints (``image_encoder.*``,
``sam_prompt_encoder.*``, ``sam_mask_decoder.*``, ``no_mem_embed``); the memory
parts of those files (video) are kept aside by :func:`split_image_state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor, nn

from ..errors import InputError
from .fpn_neck import Sam2ImageEncoder, build_sam2_image_encoder
from .prompt_encoder import PromptEncoder
from .sam import PIXEL_MEAN_RGB, PIXEL_STD_RGB, check_prompts
from .sam2_decoder import Sam2MaskDecoder, rename_decoder_keys

__all__ = ["IMAGE_PREFIXES", "Sam2", "Sam2Features", "build_sam2", "split_image_state"]

IMAGE_PREFIXES = ("image_encoder.", "sam_prompt_encoder.", "sam_mask_decoder.", "no_mem_embed")
EMBED_DIM = 256
IMAGE_SIZE = 1024


@dataclass
class Sam2Features:
    """What SAM 2.1 keeps of one image.

    Attributes
    ----------
    embedding : Tensor
        (1, 256, S/16, S/16): the stride-16 features plus ``no_mem_embed``.
    skips : (Tensor, Tensor)
        The stride-8 and stride-4 features after the decoder's 1 x 1 projections, in
        the decoder's row layout, the second with the decoder's second upscaling bias
        added (:meth:`Sam2MaskDecoder.skips_of_projected`).
    """

    embedding: Tensor
    skips: tuple[Tensor, Tensor]

    @property
    def shape(self) -> torch.Size:
        """The embedding's shape, (1, 256, h, w)."""
        return self.embedding.shape

    @property
    def nbytes(self) -> int:
        """Memory held by the embedding and the skips, in bytes."""
        return sum(t.element_size() * t.numel() for t in (self.embedding, *self.skips))

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Sam2Features:
        """The same features on ``device`` (and in ``dtype``)."""
        first, second = (t.to(device, dtype) for t in self.skips)
        return Sam2Features(self.embedding.to(device, dtype), (first, second))

    def float(self) -> Sam2Features:
        """float32 copies where needed, contiguous (as stored in an embedding)."""
        first, second = (t.float().contiguous() for t in self.skips)
        return Sam2Features(self.embedding.float().contiguous(), (first, second))


class Sam2(nn.Module):
    """SAM 2.1 for images: encode an image once, decode many prompts against it.

    Parameters
    ----------
    image_encoder : Sam2ImageEncoder
    image_size : int
        Side S of the square model frame (1024).
    """

    mask_threshold: float = 0.0
    # The reference image predictor returns low-resolution logits clamped to this.
    returned_logit_limit: float | None = 32.0
    square_frame: bool = True  # the plane is resized to S x S (core.image.preprocess_square)
    # SAM2AutomaticMaskGenerator's defaults where they differ from SAM's generator.
    everything_defaults: Mapping[str, float] = MappingProxyType({"pred_iou_thresh": 0.8})

    def __init__(self, image_encoder: Sam2ImageEncoder, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        grid = image_size // 16
        self.sam_prompt_encoder = PromptEncoder(EMBED_DIM, (grid, grid), (image_size, image_size))
        self.sam_mask_decoder = Sam2MaskDecoder(EMBED_DIM)
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.image_size = int(image_size)
        mean = torch.tensor(PIXEL_MEAN_RGB, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(PIXEL_STD_RGB, dtype=torch.float32).view(3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        # The checkpoint's memory parts (video; keys as in the file), set on loading.
        self.memory_state: dict[str, Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def encode(self, pixels: Tensor) -> Sam2Features:
        """(1, 3, S, S) normalised pixels -> :class:`Sam2Features`."""
        expected = (1, 3, self.image_size, self.image_size)
        if tuple(pixels.shape) != expected:
            raise InputError(
                f"Sam2.encode expects pixels of shape {expected}, got {tuple(pixels.shape)}; "
                f"resize the plane to {self.image_size} x {self.image_size} and normalise."
            )
        decoder = self.sam_mask_decoder
        after = {0: decoder.conv_s0, 1: decoder.conv_s1}  # projected inside the neck
        features, _ = self.image_encoder(pixels, with_encodings=False, after=after)
        embedding = features[2] + self.no_mem_embed.view(1, -1, 1, 1)
        return Sam2Features(embedding, decoder.skips_of_projected(features[0], features[1]))

    def decode(
        self,
        features: Sam2Features,
        points_xy: Tensor | None,
        point_labels: Tensor | None,
        boxes_xyxy: Tensor | None,
        mask_input: Tensor | None,
        multimask: bool,
    ) -> tuple[Tensor, Tensor]:
        """Predict masks for N prompts on one image, as :meth:`Sam.decode` (same
        arguments, same outputs; the IoU predictions are in [0, 1]).

        As the reference image predictor: box corners come first, then the points, then
        one padding point; without ``multimask`` an unstable single mask is replaced by
        the best candidate. :meth:`decode_with_object_scores` also gives the object
        scores (for video).
        """
        logits, scores, _ = self.decode_with_object_scores(
            features, points_xy, point_labels, boxes_xyxy, mask_input, multimask
        )
        return logits, scores

    def decode_with_object_scores(
        self,
        features: Sam2Features,
        points_xy: Tensor | None,
        point_labels: Tensor | None,
        boxes_xyxy: Tensor | None,
        mask_input: Tensor | None,
        multimask: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`decode` and the (N, 1) object-score logits (> 0: an object is seen)."""
        encoder = self.sam_prompt_encoder
        check_prompts(points_xy, point_labels, boxes_xyxy, mask_input, encoder)
        count = next(t.shape[0] for t in (points_xy, boxes_xyxy, mask_input) if t is not None)
        if points_xy is None:
            points_xy = features.embedding.new_zeros(count, 0, 2)
            point_labels = torch.zeros(count, 0, dtype=torch.int64, device=points_xy.device)
        tokens = [encoder.embed_points(points_xy, point_labels, pad=True)]
        if boxes_xyxy is not None:
            tokens.insert(0, encoder.embed_boxes(boxes_xyxy))
        sparse = torch.cat(tokens, dim=1)
        dense = (
            encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            if mask_input is None
            else encoder.embed_masks(mask_input)
        )
        return self.sam_mask_decoder.decode(
            features.embedding,
            encoder.dense_positional_encoding(),
            sparse,
            dense,
            multimask,
            features.skips,
        )


def split_image_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """An official SAM 2.1 state dict -> (image-model entries in our names, the rest:
    the memory parts used for video)."""
    image = {k: v for k, v in state.items() if k.startswith(IMAGE_PREFIXES)}
    rest = {k: v for k, v in state.items() if not k.startswith(IMAGE_PREFIXES)}
    return rename_decoder_keys(image, "sam_mask_decoder."), rest


def build_sam2(size: str) -> Sam2:
    """An untrained SAM 2.1 image model of one size (``"tiny"``, ``"small"``,
    ``"base_plus"``, ``"large"``)."""
    return Sam2(build_sam2_image_encoder(size))
