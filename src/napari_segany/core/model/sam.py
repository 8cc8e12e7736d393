"""The Segment Anything model: image encoder + prompt encoder + mask decoder.

Everything here is in SAM's convention and in the *model frame*: points are (x, y),
boxes are (x0, y0, x1, y1), in pixels of the image resized so its long side is
``image_size``. The (row, col) <-> (x, y) flip happens in ``core/predictor.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch
from torch import Tensor, nn

from ..errors import InputError, PromptError
from .foreground_head import ForegroundHead
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder

PIXEL_MEAN_RGB = (123.675, 116.28, 103.53)
PIXEL_STD_RGB = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    """Segment Anything: encode an image once, decode many prompts against it.

    Parameters
    ----------
    image_encoder : nn.Module
        Maps (B, 3, S, S) normalised pixels to a (B, C, h, w) embedding.
    prompt_encoder : PromptEncoder
        Embeds points, boxes and mask logits.
    mask_decoder : MaskDecoder
        Predicts low-resolution mask logits and IoU scores.
    image_size : int
        S, the side of the square, zero-padded model input (1024 for SAM).
    foreground_head : ForegroundHead, optional
        Foreground and border logits from the embedding (the built-in model's; SAM has
        none). Its weights are checkpoint keys ``foreground_head.*``.

    Attributes
    ----------
    pixel_mean, pixel_std : Tensor
        (3, 1, 1) float32 RGB normalisation constants, non-persistent buffers
        (they follow ``.to(device)`` but are not part of checkpoints).
    mask_threshold : float
        Logit above which a pixel belongs to the mask.
    """

    mask_threshold: float = 0.0
    square_frame: bool = False  # long side to S, zero-padded (core.image.preprocess)
    returned_logit_limit: float | None = None  # low-resolution logits returned as they are
    # The reference's automatic generator's defaults where they differ from GridParams'
    # (SAM's own: none).
    everything_defaults: Mapping[str, float] = MappingProxyType({})

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        image_size: int = 1024,
        foreground_head: ForegroundHead | None = None,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.foreground_head = foreground_head
        self.image_size = int(image_size)
        mean = torch.tensor(PIXEL_MEAN_RGB, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(PIXEL_STD_RGB, dtype=torch.float32).view(3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    @property
    def device(self) -> torch.device:
        """Device of the model's buffers and parameters."""
        return self.pixel_mean.device

    def encode(self, pixels: Tensor) -> Tensor:
        """Compute image embeddings.

        Parameters
        ----------
        pixels : Tensor
            (B, 3, S, S) float, already normalised (``(x - pixel_mean) / pixel_std``) and
            zero-padded to S x S, S = ``image_size``.

        Returns
        -------
        Tensor
            (B, C, S / 16, S / 16) embedding (C = 256 for SAM).
        """
        expected = (3, self.image_size, self.image_size)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != expected:
            raise InputError(
                f"Sam.encode expects pixels of shape (B, {expected[0]}, {expected[1]}, "
                f"{expected[2]}), got {tuple(pixels.shape)}; resize the long side to "
                f"{self.image_size}, normalise and zero-pad (see core/image.preprocess)."
            )
        return self.image_encoder(pixels)

    def foreground(self, embedding: Tensor) -> Tensor:
        """Foreground and border logits of the model frame.

        Parameters
        ----------
        embedding : Tensor
            (B, C, h, w), from :meth:`encode`.

        Returns
        -------
        Tensor
            (B, 2, S, S) logits, channels ``FOREGROUND`` and ``BORDER`` of
            ``core.model.foreground_head``.

        Raises
        ------
        InputError
            The model has no foreground head (SAM and micro-sam weights).
        """
        return self.require_foreground_head()(embedding)

    def require_foreground_head(self) -> ForegroundHead:
        """The foreground head; an ``InputError`` that says what to do if there is none
        (SAM and micro-sam weights), so callers can check before any work."""
        if self.foreground_head is None:
            raise InputError(
                "This model has no foreground head (only the built-in model has one); "
                "use everything mode's point grid (mode='grid')."
            )
        return self.foreground_head

    def dense_positional_encoding(self) -> Tensor:
        """(1, C, h, w) positional encoding of the embedding grid, cached per device/dtype."""
        return self.prompt_encoder.dense_positional_encoding()

    def decode(
        self,
        embedding: Tensor,
        points_xy: Tensor | None,
        point_labels: Tensor | None,
        boxes_xyxy: Tensor | None,
        mask_input: Tensor | None,
        multimask: bool,
    ) -> tuple[Tensor, Tensor]:
        """Predict masks for N prompts on one image embedding.

        The embedding is broadcast, not copied, across the N prompts.

        Parameters
        ----------
        embedding : Tensor
            (1, C, h, w) embedding of one image, from :meth:`encode`.
        points_xy : Tensor or None
            (N, P, 2) float, (x, y) in the model frame.
        point_labels : Tensor or None
            (N, P) int: 1 positive, 0 negative, -1 padding. Given iff ``points_xy`` is.
        boxes_xyxy : Tensor or None
            (N, 4) float, (x0, y0, x1, y1) in the model frame.
        mask_input : Tensor or None
            (N, 1, 4h, 4w) low-resolution logits of a previous prediction.
        multimask : bool
            Return the three ambiguity candidates instead of one mask.

        Returns
        -------
        low_res_logits : Tensor
            (N, K, 4h, 4w) mask logits (256 x 256 for SAM); K = 3 if ``multimask`` else 1.
        iou_predictions : Tensor
            (N, K) predicted IoU of each mask.
        """
        self._check_embedding(embedding)
        check_prompts(points_xy, point_labels, boxes_xyxy, mask_input, self.prompt_encoder)
        points = None if points_xy is None else (points_xy, point_labels)
        sparse, dense = self.prompt_encoder(points, boxes_xyxy, mask_input)
        return self.mask_decoder(
            embedding, self.dense_positional_encoding(), sparse, dense, multimask
        )

    def _check_embedding(self, embedding: Tensor) -> None:
        """Raise :class:`InputError` unless ``embedding`` is (1, C, h, w) for this model."""
        expected = (1, self.prompt_encoder.embed_dim, *self.prompt_encoder.image_embedding_size)
        if tuple(embedding.shape) != expected:
            raise InputError(
                f"Sam.decode expects the embedding of one image, shape {expected}, got "
                f"{tuple(embedding.shape)}; decode each image's embedding separately."
            )


def check_prompts(
    points_xy: Tensor | None,
    point_labels: Tensor | None,
    boxes_xyxy: Tensor | None,
    mask_input: Tensor | None,
    prompt_encoder: PromptEncoder,
) -> None:
    """Raise :class:`PromptError` on inconsistent prompt shapes (see :meth:`Sam.decode`)."""
    if (points_xy is None) != (point_labels is None):
        raise PromptError("Give points_xy and point_labels together (or neither).")
    counts: dict[str, int] = {}
    if points_xy is not None:
        if points_xy.ndim != 3 or points_xy.shape[-1] != 2:
            raise PromptError(f"points_xy must be (N, P, 2), got {tuple(points_xy.shape)}.")
        if tuple(point_labels.shape) != tuple(points_xy.shape[:2]):
            raise PromptError(
                f"point_labels must be (N, P) = {tuple(points_xy.shape[:2])} to match "
                f"points_xy, got {tuple(point_labels.shape)}."
            )
        counts["points_xy"] = points_xy.shape[0]
    if boxes_xyxy is not None:
        if boxes_xyxy.ndim != 2 or boxes_xyxy.shape[-1] != 4:
            raise PromptError(f"boxes_xyxy must be (N, 4), got {tuple(boxes_xyxy.shape)}.")
        counts["boxes_xyxy"] = boxes_xyxy.shape[0]
    if mask_input is not None:
        expected = (1, *prompt_encoder.mask_input_size)
        if mask_input.ndim != 4 or tuple(mask_input.shape[1:]) != expected:
            raise PromptError(
                f"mask_input must be (N, {', '.join(map(str, expected))}) low-resolution "
                f"logits (as returned by a previous prediction), got {tuple(mask_input.shape)}."
            )
        counts["mask_input"] = mask_input.shape[0]
    if len(set(counts.values())) > 1:
        found = ", ".join(f"{name}: {count}" for name, count in counts.items())
        raise PromptError(f"All prompts must hold the same number N of objects ({found}).")
