"""SAM's mask decoder: image embedding + prompt tokens -> mask logits and IoU scores."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import LayerNorm2d
from .dense import Linear, linear
from .image_cache import CachedImage, parameters_of
from .implicit_image import PlaneProjections, attend_implicit, implicit_is_cheaper, project_plane
from .subpixel import image_order, subpixel_weight
from .transformer import ImageTokens, TwoWayTransformer

# Input pixels per piece of the output upscaling (1024 x 256 floats in, 16384 x 32 out):
# the 16x larger intermediates stay small (measured faster than 256 or 4096).
_UPSCALE_BLOCK_PIXELS = 1024


class ReluMLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (none after the last).

    Parameters
    ----------
    input_dim, hidden_dim, output_dim : int
        Widths of the input, the hidden layers and the output.
    num_layers : int
        Number of linear layers (>= 1).
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        widths = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(
            Linear(width_in, width_out) for width_in, width_out in zip(widths, widths[1:])
        )

    def forward(self, x: Tensor) -> Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < last:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    """Predict mask logits and their IoU from an image embedding and prompt tokens.

    Output token 0 gives the single-mask answer; tokens 1..``num_multimask_outputs``
    give the ambiguity candidates.

    Parameters
    ----------
    transformer_dim : int
        Channels of tokens and image embedding.
    num_multimask_outputs : int
        Number of candidate masks in multimask mode.
    iou_head_depth, iou_head_hidden_dim : int
        Depth and width of the IoU prediction MLP.
    transformer : TwoWayTransformer, optional
        Defaults to SAM's (depth 2, 8 heads, MLP width 2048).
    """

    def __init__(
        self,
        transformer_dim: int = 256,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        transformer: TwoWayTransformer | None = None,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        if transformer is None:
            transformer = TwoWayTransformer(2, transformer_dim, 8, 2048)
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            ReluMLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = ReluMLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )
        self._image_cache: CachedImage | None = None

    def forward(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        sparse_embedding: Tensor,
        dense_embedding: Tensor,
        multimask: bool,
    ) -> tuple[Tensor, Tensor]:
        """Decode N prompts against one image embedding.

        Parameters
        ----------
        image_embedding : Tensor
            (1 or N, C, h, w) image embedding.
        image_pe : Tensor
            (1, C, h, w) dense positional encoding.
        sparse_embedding : Tensor
            (N, T, C) prompt tokens.
        dense_embedding : Tensor
            (N or 1, C, h or 1, w or 1) dense prompt embedding, broadcast-added to the
            image embedding.
        multimask : bool
            Return the ``num_multimask_outputs`` candidates instead of the single mask.

        Returns
        -------
        low_res_logits : Tensor
            (N, K, 4h, 4w) mask logits; K = ``num_multimask_outputs`` or 1.
        iou_predictions : Tensor
            (N, K) predicted IoU of each mask.
        """
        kinds = range(1, self.num_mask_tokens) if multimask else range(1)  # the masks returned
        tokens, masks = self.decode_tokens(
            image_embedding, image_pe, sparse_embedding, dense_embedding, kinds
        )
        iou_predictions = self.iou_prediction_head(tokens[:, 0])[:, kinds.start : kinds.stop]
        return masks, iou_predictions

    def decode_tokens(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        sparse_embedding: Tensor,
        dense_embedding: Tensor,
        kinds: range,
        leading: Tensor | None = None,
        pixel_skips: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The transformer and the masks of the mask tokens ``kinds`` (arguments as in
        :meth:`forward`).

        Parameters
        ----------
        kinds : range
            The mask tokens whose masks are made (0: the single mask, 1.. the candidates).
        leading : Tensor, optional
            (L, C) output tokens placed before the IoU token (SAM 2's object-score token).
        pixel_skips : (Tensor, Tensor), optional
            SAM 2's high-resolution skips in the rows of :func:`.subpixel.skip_rows`:
            features added to the first upscaling's output before its norm, and the
            second upscaling's per-row biases (its skip plus its own bias, made once
            per image rather than per prompt).

        Returns
        -------
        tokens : Tensor
            (N, L + 1 + len(kinds), C): the leading tokens, the IoU token and the masks'
            tokens, after the transformer.
        masks : Tensor
            (N, len(kinds), 4h, 4w) logits.
        """
        count = sparse_embedding.shape[0]
        own = [self.iou_token.weight, self.mask_tokens.weight]
        output_tokens = torch.cat(own if leading is None else [leading, *own])
        output_tokens = output_tokens.to(sparse_embedding.dtype).expand(count, -1, -1)
        tokens = torch.cat([output_tokens, sparse_embedding], dim=1)
        prepared = self._image_side(image_embedding, image_pe, dense_embedding)
        upscaling = self._upscaling(prepared)
        first_mask = 1 if leading is None else 1 + leading.shape[0]
        read = [*range(first_mask), *(first_mask + kind for kind in kinds)]
        tokens, upscaled_blocks = self._attend(prepared, tokens, upscaling[:2], read)
        mask_weights = torch.stack(
            [
                self.output_hypernetworks_mlps[kind](tokens[:, first_mask + position])
                for position, kind in enumerate(kinds)
            ],
            dim=1,
        )  # (N, K, C / 8)
        grid_hw = image_embedding.shape[-2:]
        second = upscaling[2:]
        if pixel_skips is not None:  # per-row biases: the second skip plus the bias
            second = (second[0], pixel_skips[1])
        first_skip = None if pixel_skips is None else pixel_skips[0]
        masks = self._masks(upscaled_blocks, grid_hw, mask_weights, second, first_skip)
        return tokens, masks

    def _attend(
        self,
        prepared: ImageTokens,
        tokens: Tensor,
        upscaling: tuple[Tensor, Tensor],
        read: list[int],
    ) -> tuple[Tensor, Iterable[Tensor]]:
        """The transformer on (N, T, C) tokens: the tokens ``read`` after it, (N,
        len(read), C), and the output image's first upscaling (``upscaling``: its matmul
        weight and bias) in blocks of pixels. The implicit path runs the final attention
        for those tokens only (a mask token not returned is never read)."""
        plane = self._plane_projections(prepared, tokens.shape[1], upscaling[0])
        if plane is not None:  # few tokens, wide embedding: the image is never formed
            return attend_implicit(
                self.transformer, plane, tokens, upscaling, _UPSCALE_BLOCK_PIXELS, read
            )
        readout = None
        if prepared.readout_blocks is not None:  # the image carries the first upscaling
            readout = self.transformer.readout_weights(*upscaling)
        tokens, image = self.transformer.attend(prepared, tokens, readout)
        upscaled_blocks = image.readout_blocks or (
            torch.matmul(block, upscaling[0]) + upscaling[1] for block in image.blocks
        )
        return tokens[:, read], upscaled_blocks

    def _plane_projections(
        self, prepared: ImageTokens, tokens: int, readout_weight: Tensor
    ) -> PlaneProjections | None:
        """The cached plane's products for the implicit path, when that path is cheaper.

        Computed on the first prompt that takes the path, then kept with the cached image
        side (:meth:`_image_side`); None for an image side that is not the cached one
        (a mask prompt, autograd) or when the blockwise path is cheaper (many tokens, a
        narrow embedding such as the built-in model's).
        """
        cached = self._image_cache
        if cached is None or cached.image is not prepared:
            return None
        transformer = self.transformer
        heads = transformer.layers[0].cross_attn_image_to_token.num_heads
        channels, depth, width = (
            transformer.embedding_dim,
            transformer.depth,
            readout_weight.shape[1],
        )
        if not implicit_is_cheaper(channels, heads, tokens, depth, width):
            return None
        if cached.plane is None:
            cached.plane = project_plane(transformer, prepared, readout_weight)
        return cached.plane

    def _image_side(
        self, image_embedding: Tensor, image_pe: Tensor, dense_embedding: Tensor
    ) -> ImageTokens:
        """The transformer's image side, reused while it depends on nothing new.

        Without a mask prompt the dense embedding is one learned vector, so the image
        side depends only on the embedding and the weights: interactive prompting on
        one image prepares it once. It then includes the first token-to-image keys and
        values, which makes that attention nearly free, and the image times the first
        upscaling weight, which the transformer carries through its blocks
        (:meth:`TwoWayTransformer.readout_weights`). Every call on one image takes the
        same path, so equal prompts give bit-identical results. Only without autograd
        (inference); the cache holds one image and notices in-place changes of normal
        tensors (not of inference-mode tensors, which must not change).
        """
        transformer = self.transformer
        if (
            torch.is_grad_enabled()
            or tuple(dense_embedding.shape[-2:]) != (1, 1)
            or not transformer.layers
        ):
            return transformer.prepare_image(image_embedding + dense_embedding, image_pe)
        inputs = (image_embedding, image_pe, dense_embedding, *parameters_of(self))
        cached = self._image_cache
        if cached is not None and cached.matches(inputs):
            return cached.image
        image = transformer.prepare_image(image_embedding + dense_embedding, image_pe)
        image = transformer.project_first_image(image)
        upscaling = self._upscaling_matmuls()
        image = transformer.track_readout(image, transformer.readout_weights(*upscaling[:2]))
        self._image_cache = CachedImage(inputs, image, upscaling)
        return image

    def _upscaling(self, prepared: ImageTokens) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`_upscaling_matmuls`, kept with the cached image side (whose check covers
        the weights), so a prompt on a cached image does not redo them."""
        cached = self._image_cache
        if cached is not None and cached.image is prepared:
            return cached.upscaling
        return self._upscaling_matmuls()

    def _upscaling_matmuls(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Both upscaling convolutions as matmul weights and biases
        (:func:`.subpixel.subpixel_weight`): (C, C) and (C,), then (C / 4, C / 2) and
        (C / 2,)."""
        first, second = self.output_upscaling[0], self.output_upscaling[3]
        return (
            subpixel_weight(first),
            first.bias.repeat(4),
            subpixel_weight(second),
            second.bias.repeat(4),
        )

    def _masks(
        self,
        upscaled_blocks: Iterable[Tensor],
        grid_hw: tuple[int, int],
        mask_weights: Tensor,
        second_upscaling: tuple[Tensor, Tensor],
        first_skip: Tensor | None = None,
    ) -> Tensor:
        """Upscale the image tokens 4x and project every pixel on each mask's weights.

        A stride-2, 2 x 2 transposed convolution maps each input pixel to its own 2 x 2
        output block: it is one matmul to ``4 * C_out`` columns (sub-pixel, channel)
        plus a bias. Layer norm and GELU act per pixel, so both upscaling steps run on
        (pixel, sub-pixel) rows, some pixels at a time (the intermediates are 16x
        larger than the input); only the (N, K) logit planes are put into image order.

        Parameters
        ----------
        upscaled_blocks : iterable of Tensor
            The output image's first upscaling (:meth:`_upscaling_matmuls`) in blocks of
            pixels, (N or 1, r_i, 4 C / 4), row-major over (h, w).
        grid_hw : tuple of int
            (h, w).
        mask_weights : Tensor
            (N, K, C / 8) per-mask weights from the hypernetworks.
        second_upscaling : tuple of Tensor
            The second upscaling's matmul weight (C / 4, C / 2) and bias: (C / 2,), or
            (16 h w / 4, C / 2) per row (:func:`.subpixel.skip_rows`'s second skip added).
        first_skip : Tensor, optional
            (h w, C) added to the first upscaling's rows (:func:`.subpixel.skip_rows`).

        Returns
        -------
        Tensor
            (N, K, 4h, 4w) logits.
        """
        (count, kinds, _), (height, width) = mask_weights.shape, grid_hw
        # Without autograd the GELUs run in place and the logits go straight into one
        # buffer (fresh memory is slow to touch); the values are the same either way.
        inference = not torch.is_grad_enabled()
        gelu = torch.ops.aten.gelu_ if inference else F.gelu
        rows = 16 * height * width  # (pixel, sub-pixel) rows of each prompt
        per_pixel = mask_weights.new_empty(count, kinds, rows) if inference else None
        parts: list[list[Tensor]] = [[] for _ in range(count)]
        filled = [0] * count
        start_pixel = 0
        for upscaled_block in upscaled_blocks:
            block_pixels = upscaled_block.shape[1]
            for index, weights in enumerate(mask_weights):
                pieces = upscaled_block[0 if upscaled_block.shape[0] == 1 else index]
                for offset in range(0, block_pixels, _UPSCALE_BLOCK_PIXELS):
                    piece = pieces[offset : offset + _UPSCALE_BLOCK_PIXELS]
                    upscaled = self._upscale_piece(
                        piece, start_pixel + offset, second_upscaling, first_skip, gelu
                    )  # (16 pixels, C / 8)
                    if per_pixel is None:
                        parts[index].append(weights @ upscaled.T)  # (K, 16 pixels)
                        continue
                    begin, filled[index] = filled[index], filled[index] + upscaled.shape[0]
                    torch.mm(weights, upscaled.T, out=per_pixel[index, :, begin : filled[index]])
            start_pixel += block_pixels
        if per_pixel is None:
            per_pixel = torch.stack([torch.cat(prompt_parts, dim=1) for prompt_parts in parts])
        return image_order(per_pixel, height, width)

    def _upscale_piece(
        self,
        upscaled: Tensor,
        first: int,
        second_upscaling: tuple[Tensor, Tensor],
        first_skip: Tensor | None,
        gelu,
    ) -> Tensor:
        """Rows ``first ..`` of the first upscaling's output, (P, C), through its norm and
        GELU and the second upscaling: (16 P, C / 8) features, rows (pixel, sub-pixel)."""
        norm, (weight, bias) = self.output_upscaling[1], second_upscaling
        stop = first + upscaled.shape[0]
        if first_skip is not None:
            upscaled = upscaled + first_skip[first:stop]
        upscaled = upscaled.reshape(-1, norm.weight.shape[0])  # (4 pixels, C / 4)
        upscaled = F.layer_norm(upscaled, norm.weight.shape, norm.weight, norm.bias, norm.eps)
        if bias.dim() == 2:  # a bias per (pixel, sub-pixel) row
            upscaled = linear(gelu(upscaled), weight.T).add_(bias[4 * first : 4 * stop])
        else:
            upscaled = linear(gelu(upscaled), weight.T, bias)
        return gelu(upscaled).view(-1, weight.shape[1] // 4)
