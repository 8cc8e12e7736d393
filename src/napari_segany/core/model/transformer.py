"""SAM's two-way transformer: prompt tokens and image embedding attend to each other.

Batching convention: the image side (embedding and its positional encoding) may have
batch size 1 while the tokens have batch size N. Everything broadcasts, so one image
embedding serves N prompts without being copied N times; the image side becomes
per-prompt only after the first image-to-token attention has updated it.

Speed: the cross attentions never project the image to the attention width (see
:mod:`.attention`); the image side is kept in blocks of pixels (:class:`ImageTokens`) to
bound per-pixel temporaries; and with :meth:`TwoWayTransformer.readout_weights`
a fixed linear map of the output image (the decoder's first upscaling) is carried
through the blocks with small matrices from a once-per-image product.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from .attention import ProjectedAttention
from .common import MLPBlock

__all__ = [
    "ImageTokens",
    "LayerReadout",
    "ProjectedAttention",
    "TwoWayAttentionBlock",
    "TwoWayTransformer",
]

# Values per image block (4 MiB in float32): bounds the temporaries of per-pixel work
# without splitting a single 64 x 64 embedding (more, smaller operations measured no
# faster, and slower with several threads on a busy machine).
_BLOCK_VALUES = 1 << 20


@dataclass
class ImageTokens:
    """The image side of the transformer: pixels as tokens, row-major over (h, w).

    The pixel axis is split into blocks (the same split in every list) so that
    per-pixel work runs on bounded pieces. Without a mask prompt everything here
    depends only on the image embedding and the weights, so it may be reused.

    Attributes
    ----------
    blocks : list of Tensor
        (B, r_i, C) image tokens (embedding plus dense prompt embedding); B = 1 or N.
    pe_blocks : list of Tensor
        (1, r_i, C) positional encoding.
    with_pe_blocks : list of Tensor
        (B, r_i, C) ``blocks + pe_blocks``.
    projected : tuple of Tensor or None
        For a shared image (B = 1), the first block's token-to-image keys and values
        from :meth:`ProjectedAttention.project_image`, when computed.
    readout_blocks : list of Tensor or None
        (B, r_i, K): the blocks times the readout weight of their layer, when tracked
        (see :meth:`TwoWayTransformer.readout_weights`).
    scratch : bool
        The blocks are temporaries that may be overwritten.
    """

    blocks: list[Tensor]
    pe_blocks: list[Tensor]
    with_pe_blocks: list[Tensor]
    projected: tuple[Tensor, Tensor] | None = None
    readout_blocks: list[Tensor] | None = None
    scratch: bool = False

    @classmethod
    def from_tokens(cls, image: Tensor, image_pe: Tensor) -> ImageTokens:
        """Split (B, L, C) tokens and their (1, L, C) encoding into bounded blocks."""
        rows = max(16, _BLOCK_VALUES // (image.shape[0] * image.shape[2]))
        blocks, pe_blocks = list(image.split(rows, 1)), list(image_pe.split(rows, 1))
        with_pe = [block + pe for block, pe in zip(blocks, pe_blocks)]
        return cls(blocks, pe_blocks, with_pe)

    def image(self) -> Tensor:
        """All blocks as one (B, L, C) tensor."""
        return torch.cat(self.blocks, 1) if len(self.blocks) > 1 else self.blocks[0]


@dataclass
class LayerReadout:
    """How one block carries ``image @ F`` (see :meth:`TwoWayTransformer.readout_weights`).

    Attributes
    ----------
    weight : Tensor
        (C, K) F_i, applied to the block's input image.
    next_bias : Tensor
        (K,) ``norm4.bias @ F_(i+1)`` (plus the readout bias after the last block).
    """

    weight: Tensor
    next_bias: Tensor


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token-to-image attention, token MLP, image-to-token attention.

    Parameters
    ----------
    embedding_dim, num_heads, mlp_dim : int
        Width, heads and MLP hidden width.
    attention_downsample_rate : int
        Channel reduction of the two cross attentions.
    skip_first_layer_pe : bool
        In the first block the tokens attend to themselves without their positional
        encoding and without a residual connection (as in the reference model).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = ProjectedAttention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = ProjectedAttention(
            embedding_dim, num_heads, attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = ProjectedAttention(
            embedding_dim, num_heads, attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, tokens: Tensor, image: Tensor, tokens_pe: Tensor, image_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Update tokens (N, T, C) and image (1 or N, HW, C); return both (image now N)."""
        tokens, updated = self.attend(tokens, ImageTokens.from_tokens(image, image_pe), tokens_pe)
        return tokens, updated.image()

    def attend(
        self,
        tokens: Tensor,
        image: ImageTokens,
        tokens_pe: Tensor,
        readout: LayerReadout | None = None,
    ) -> tuple[Tensor, ImageTokens]:
        """:meth:`forward` on an image in blocks; returns the updated image in blocks.

        With ``readout`` and ``image.readout_blocks``, the readout blocks are carried
        through the layer (see :meth:`TwoWayTransformer.readout_weights`).
        """
        tokens = self.attend_tokens_to_tokens(tokens, tokens_pe)
        tokens_with_pe = tokens + tokens_pe
        to_image = self.cross_attn_token_to_image
        if image.projected is not None:
            attended = to_image.attend_projected_image(tokens_with_pe, *image.projected)
        else:
            attended = to_image.attend_tokens_to_image(
                tokens_with_pe, image.with_pe_blocks, image.blocks
            )
        tokens = self.finish_tokens(tokens, attended)
        return tokens, self._update_image(tokens, tokens + tokens_pe, image, readout)

    def attend_tokens_to_tokens(self, tokens: Tensor, tokens_pe: Tensor) -> Tensor:
        """The block's first step: token self-attention and ``norm1``, (N, T, C)."""
        if self.skip_first_layer_pe:
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            tokens_with_pe = tokens + tokens_pe
            tokens = tokens + self.self_attn(tokens_with_pe, tokens_with_pe, tokens)
        return self.norm1(tokens)

    def finish_tokens(self, tokens: Tensor, attended: Tensor) -> Tensor:
        """After the token-to-image attention (``attended``): ``norm2``, MLP, ``norm3``."""
        tokens = self.norm2(tokens + attended)
        return self.norm3(tokens + self.mlp(tokens))

    def _update_image(
        self,
        tokens: Tensor,
        tokens_with_pe: Tensor,
        image: ImageTokens,
        readout: LayerReadout | None,
    ) -> ImageTokens:
        """Image-to-token attention and ``norm4``, block by block."""
        in_place = (
            image.scratch
            and not torch.is_grad_enabled()
            and image.blocks[0].shape[0] == tokens.shape[0]
        )
        tracked = None
        if readout is not None and image.readout_blocks is not None:
            tracked = (image.readout_blocks, readout.weight)
        updates = self.cross_attn_image_to_token.attend_image_to_tokens(
            image.with_pe_blocks, tokens_with_pe, tokens, image.blocks, in_place, tracked
        )
        norm = self.norm4
        blocks, with_pe, readouts = [], [], []
        for (update, readout_update), pe in zip(updates, image.pe_blocks):
            normed, _, rstd = torch.native_layer_norm(
                update, norm.normalized_shape, norm.weight, norm.bias, norm.eps
            )
            blocks.append(normed)
            with_pe.append(normed + pe)
            if readout_update is not None:
                rstd = rstd.to(readout_update.dtype)
                readouts.append(torch.addcmul(readout.next_bias, readout_update, rstd))
        readout_blocks = readouts if len(readouts) == len(blocks) else None
        return ImageTokens(
            blocks, image.pe_blocks, with_pe, readout_blocks=readout_blocks, scratch=True
        )


class TwoWayTransformer(nn.Module):
    """Stack of :class:`TwoWayAttentionBlock` plus a final token-to-image attention.

    Parameters
    ----------
    depth : int
        Number of two-way blocks.
    embedding_dim : int
        Channels of tokens and image embedding.
    num_heads : int
        Attention heads.
    mlp_dim : int
        Hidden width of the token MLPs.
    attention_downsample_rate : int
        Channel reduction of the cross attentions.
    """

    def __init__(
        self,
        depth: int = 2,
        embedding_dim: int = 256,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim,
                num_heads,
                mlp_dim,
                attention_downsample_rate,
                skip_first_layer_pe=(index == 0),
            )
            for index in range(depth)
        )
        self.final_attn_token_to_image = ProjectedAttention(
            embedding_dim, num_heads, attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: Tensor, image_pe: Tensor, token_embedding: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Run the transformer.

        Parameters
        ----------
        image_embedding : Tensor
            (1 or N, C, h, w) image embedding (plus dense prompt embedding).
        image_pe : Tensor
            (1, C, h, w) positional encoding of the image embedding.
        token_embedding : Tensor
            (N, T, C) output tokens followed by prompt tokens; also their positional
            encoding.

        Returns
        -------
        tokens : Tensor
            (N, T, C) processed tokens.
        image : Tensor
            (N, h * w, C) processed image embedding, row-major over (h, w).
        """
        image = self.prepare_image(image_embedding, image_pe)
        tokens, image = self.attend(image, token_embedding)
        return tokens, image.image().expand(tokens.shape[0], -1, -1)

    def prepare_image(self, image_embedding: Tensor, image_pe: Tensor) -> ImageTokens:
        """(B, C, h, w) image embedding and (1, C, h, w) encoding as :class:`ImageTokens`."""
        image = image_embedding.flatten(2).transpose(1, 2).contiguous()
        return ImageTokens.from_tokens(image, image_pe.flatten(2).transpose(1, 2).contiguous())

    def project_first_image(self, image: ImageTokens) -> ImageTokens:
        """``image`` with the first block's token-to-image keys and values computed."""
        if not self.layers or image.blocks[0].shape[0] != 1:
            return image
        attention = self.layers[0].cross_attn_token_to_image
        projected = attention.project_image(image.with_pe_blocks, image.blocks)
        return replace(image, projected=projected)

    def readout_weights(self, weight: Tensor, bias: Tensor) -> list[LayerReadout]:
        """Per-block weights that carry ``image @ weight + bias`` through the blocks.

        A block ends with ``x' = (z - mean(z)) * rstd * g + b`` where ``z = x + A^T V``
        (image-to-token attention, T tokens). With ``P`` the centring ``I - 1 1^T / C``
        (so ``(z - mean(z)) = z P``), ``x' @ F' = (z @ F) * rstd + b @ F'`` for
        ``F = P diag(g) F'``, and ``z @ F = x @ F + A^T (V F)``: given ``x @ F`` (computed
        once per image), each block updates it with an (H * T, K) product instead of an
        image-sized one, and one multiply-add.

        Parameters
        ----------
        weight : Tensor
            (C, K) applied to the transformer's output image.
        bias : Tensor
            (K,) added to it.

        Returns
        -------
        list of LayerReadout
            One per block; ``[0].weight`` is what the input image is multiplied by.
        """
        readouts = []
        following, extra_bias = weight, bias
        for block in reversed(self.layers):
            norm = block.norm4
            current = norm.weight[:, None] * following
            current = current - current.mean(0)  # centred: P diag(g) F'
            readouts.append(LayerReadout(current, norm.bias @ following + extra_bias))
            following, extra_bias = current, torch.zeros_like(bias)
        return readouts[::-1]

    def track_readout(self, image: ImageTokens, readout: list[LayerReadout]) -> ImageTokens:
        """``image`` with its readout blocks (``blocks @ readout[0].weight``) computed."""
        if not readout:
            return image
        return replace(image, readout_blocks=[block @ readout[0].weight for block in image.blocks])

    def attend(
        self,
        image: ImageTokens,
        token_embedding: Tensor,
        readout: list[LayerReadout] | None = None,
    ) -> tuple[Tensor, ImageTokens]:
        """:meth:`forward` on a prepared image (:meth:`prepare_image`), kept in blocks.

        With ``readout`` (from :meth:`readout_weights`) and ``image.readout_blocks``
        (from :meth:`track_readout`), the returned image's ``readout_blocks`` are
        ``image @ weight + bias``; otherwise they are None.
        """
        tokens = token_embedding
        for index, block in enumerate(self.layers):
            layer_readout = None if readout is None else readout[index]
            tokens, image = block.attend(tokens, image, token_embedding, layer_readout)
        attended = self.final_attn_token_to_image.attend_tokens_to_image(
            tokens + token_embedding, image.with_pe_blocks, image.blocks
        )
        return self.norm_final_attn(tokens + attended), image
