"""SAM's prompt encoder: points, boxes and low-resolution masks -> decoder inputs.

All coordinates are in SAM's convention and in the *model frame* (the image resized so
that its long side is ``input_image_size``): ``points_xy`` and ``boxes_xyxy`` hold
(x, y) pixel coordinates. Like the reference model, every coordinate is shifted by
+0.5 (to the pixel centre) before it is encoded.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .common import LayerNorm2d

# Point labels understood by the encoder.
LABEL_PADDING = -1
LABEL_NEGATIVE = 0
LABEL_POSITIVE = 1


class RandomFourierEncoding(nn.Module):
    """Positional encoding of 2D coordinates with fixed random spatial frequencies.

    A coordinate ``c`` in [0, 1]^2 becomes ``[sin(2 pi (2c - 1) G), cos(2 pi (2c - 1) G)]``
    where ``G`` is the (2, num_frequencies) buffer ``positional_encoding_gaussian_matrix``
    (part of the checkpoint).

    Parameters
    ----------
    num_frequencies : int
        Columns of ``G``; the encoding has ``2 * num_frequencies`` channels.
    """

    def __init__(self, num_frequencies: int = 128) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_frequencies))

    def encode_unit(self, coords_xy: Tensor) -> Tensor:
        """Encode coordinates normalised to [0, 1].

        Parameters
        ----------
        coords_xy : Tensor
            (..., 2) float32, (x, y) in [0, 1].

        Returns
        -------
        Tensor
            (..., 2 * num_frequencies) float32.
        """
        frequencies = self.positional_encoding_gaussian_matrix.float()
        phase = (2.0 * math.pi) * ((2.0 * coords_xy - 1.0) @ frequencies)
        return torch.cat([phase.sin(), phase.cos()], dim=-1)

    def encode_pixels(self, coords_xy: Tensor, image_hw: tuple[int, int]) -> Tensor:
        """Encode (x, y) pixel coordinates of an image of size ``image_hw`` = (H, W).

        Parameters
        ----------
        coords_xy : Tensor
            (..., 2) float, (x, y) in pixels (already shifted to pixel centres).
        image_hw : tuple of int
            (height, width) the coordinates refer to.

        Returns
        -------
        Tensor
            (..., 2 * num_frequencies) float32.
        """
        extent_xy = coords_xy.new_tensor([image_hw[1], image_hw[0]], dtype=torch.float32)
        return self.encode_unit(coords_xy.float() / extent_xy)

    def encode_grid(self, grid_hw: tuple[int, int]) -> Tensor:
        """Encode the centres of a (h, w) grid of cells covering [0, 1]^2.

        Returns
        -------
        Tensor
            (2 * num_frequencies, h, w) float32.
        """
        height, width = grid_hw
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        grid_xy = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h, w, 2)
        return self.encode_unit(grid_xy).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Embed point, box and mask prompts for :class:`~.mask_decoder.MaskDecoder`.

    Parameters
    ----------
    embed_dim : int
        Channels of every prompt token and of the dense embedding.
    image_embedding_size : tuple of int
        (h, w) of the image embedding (64, 64 for SAM at 1024).
    input_image_size : tuple of int
        (H, W) of the padded model input the coordinates refer to.
    mask_in_chans : int
        Hidden channels of the mask downscaling network.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        image_embedding_size: tuple[int, int] = (64, 64),
        input_image_size: tuple[int, int] = (1024, 1024),
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        quarter = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, quarter, kernel_size=2, stride=2),
            LayerNorm2d(quarter),
            nn.GELU(),
            nn.Conv2d(quarter, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe_cache: tuple[Tensor, int, Tensor] | None = None

    @property
    def _dtype(self) -> torch.dtype:
        return self.no_mask_embed.weight.dtype

    def dense_positional_encoding(self) -> Tensor:
        """Positional encoding of every cell of the image embedding, cached.

        The result depends only on the ``positional_encoding_gaussian_matrix`` buffer.
        It is recomputed whenever that buffer is replaced (``.to(...)``, a new dtype,
        ``load_state_dict(assign=True)``) or modified in place (``load_state_dict``),
        so the cache cannot go stale.

        Returns
        -------
        Tensor
            (1, embed_dim, h, w) in the dtype of the prompt embeddings, on their device.
        """
        source = self.pe_layer.positional_encoding_gaussian_matrix
        cache = self._dense_pe_cache
        if cache is not None:
            cached_source, cached_version, cached_pe = cache
            if (
                cached_source is source
                and cached_version == _version(source)
                and cached_pe.dtype == self._dtype
            ):
                return cached_pe
        with torch.no_grad(), torch.inference_mode(False):
            pe = self.pe_layer.encode_grid(self.image_embedding_size).unsqueeze(0)
            pe = pe.to(self._dtype)
        self._dense_pe_cache = (source, _version(source), pe)
        return pe

    def embed_points(self, points_xy: Tensor, labels: Tensor, pad: bool) -> Tensor:
        """Embed labelled points.

        Parameters
        ----------
        points_xy : Tensor
            (N, P, 2) float, (x, y) in the model frame.
        labels : Tensor
            (N, P) int: 1 positive, 0 negative, -1 padding (ignored point).
        pad : bool
            Append one padding point to every prompt (done when no box is given).

        Returns
        -------
        Tensor
            (N, P + pad, embed_dim).
        """
        points_xy = points_xy.float()
        if pad:
            points_xy = torch.cat([points_xy, points_xy.new_zeros(len(points_xy), 1, 2)], 1)
            labels = torch.cat([labels, labels.new_full((len(labels), 1), LABEL_PADDING)], 1)
        pe = self.pe_layer.encode_pixels(points_xy + 0.5, self.input_image_size).to(self._dtype)
        labels = labels[..., None]
        tokens = torch.where(labels == LABEL_PADDING, self.not_a_point_embed.weight, pe)
        tokens = tokens + (labels == LABEL_NEGATIVE) * self.point_embeddings[0].weight
        return tokens + (labels == LABEL_POSITIVE) * self.point_embeddings[1].weight

    def embed_boxes(self, boxes_xyxy: Tensor) -> Tensor:
        """Embed boxes as two corner tokens.

        Parameters
        ----------
        boxes_xyxy : Tensor
            (N, 4) float, (x0, y0, x1, y1) in the model frame.

        Returns
        -------
        Tensor
            (N, 2, embed_dim): top-left token, bottom-right token.
        """
        corners_xy = boxes_xyxy.reshape(-1, 2, 2) + 0.5
        pe = self.pe_layer.encode_pixels(corners_xy, self.input_image_size).to(self._dtype)
        corner_types = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return pe + corner_types

    def embed_masks(self, mask_input: Tensor) -> Tensor:
        """Embed low-resolution mask logits: (N, 1, 4h, 4w) -> (N, embed_dim, h, w)."""
        return self.mask_downscaling(mask_input)

    def forward(
        self,
        points: tuple[Tensor, Tensor] | None,
        boxes_xyxy: Tensor | None,
        mask_input: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Embed all prompts of a batch of N prompts.

        Parameters
        ----------
        points : tuple of Tensor or None
            ``(points_xy, labels)``, (N, P, 2) float and (N, P) int.
        boxes_xyxy : Tensor or None
            (N, 4) float.
        mask_input : Tensor or None
            (N, 1, 4h, 4w) low-resolution logits.

        Returns
        -------
        sparse : Tensor
            (N, T, embed_dim): point tokens (plus one padding token when there is no
            box), then two box-corner tokens.
        dense : Tensor
            (N, embed_dim, h, w) from ``mask_input``, else the learned no-mask embedding
            as (1, embed_dim, 1, 1), to be broadcast against the image embedding.
        """
        batch = _batch_size(points, boxes_xyxy, mask_input)
        tokens = [self.no_mask_embed.weight.new_empty(batch, 0, self.embed_dim)]
        if points is not None:
            tokens.append(self.embed_points(*points, pad=boxes_xyxy is None))
        if boxes_xyxy is not None:
            tokens.append(self.embed_boxes(boxes_xyxy))
        if mask_input is not None:
            dense = self.embed_masks(mask_input)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return torch.cat(tokens, dim=1), dense


def _version(tensor: Tensor) -> int:
    """In-place modification counter; -1 for inference tensors, which cannot be modified
    outside inference mode (a model built under ``torch.inference_mode``)."""
    return -1 if tensor.is_inference() else tensor._version


def _batch_size(
    points: tuple[Tensor, Tensor] | None, boxes: Tensor | None, masks: Tensor | None
) -> int:
    """Number of prompts N: from the first prompt kind given, else 1."""
    for prompt in (points[0] if points is not None else None, boxes, masks):
        if prompt is not None:
            return prompt.shape[0]
    return 1
