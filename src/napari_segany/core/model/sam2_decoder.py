"""SAM 2.1's mask decoder: SAM's, plus an object-score token, high-resolution skips,
sigmoid IoU scores and the single mask's fall-back to a candidate when it is unstable.

The transformer, the upscaling and the hypernetworks are SAM's (:class:`MaskDecoder`,
with its cached image side and implicit path). Parameter names are those of the
official checkpoints (``sam_mask_decoder.*``); the transformer's MLPs are stored
there as ``mlp.layers.0/1`` (ours: ``mlp.lin1/lin2``, renamed on loading by
:func:`rename_decoder_keys`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .mask_decoder import MaskDecoder, ReluMLP
from .subpixel import skip_rows
from .transformer import TwoWayTransformer

__all__ = ["Sam2MaskDecoder", "rename_decoder_keys"]

# The reference image predictor's settings (sam2.build_sam: dynamic multimask on).
STABILITY_DELTA = 0.05
STABILITY_THRESHOLD = 0.98


def rename_decoder_keys(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """``state`` with the transformer MLP keys under ``prefix`` in our names
    (``mlp.layers.0`` -> ``mlp.lin1``, ``mlp.layers.1`` -> ``mlp.lin2``)."""
    names = {".mlp.layers.0.": ".mlp.lin1.", ".mlp.layers.1.": ".mlp.lin2."}
    renamed = {}
    for key, value in state.items():
        if key.startswith(prefix + "transformer.layers."):
            for theirs, ours in names.items():
                key = key.replace(theirs, ours)
        renamed[key] = value
    return renamed


class Sam2MaskDecoder(MaskDecoder):
    """Mask logits, IoU scores and an object score from an embedding and prompt tokens.

    Parameters
    ----------
    transformer_dim : int
        Channels of tokens and embedding (256).
    """

    def __init__(self, transformer_dim: int = 256) -> None:
        transformer = TwoWayTransformer(2, transformer_dim, 8, 2048)
        super().__init__(transformer_dim, 3, 3, 256, transformer)
        self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.pred_obj_score_head = ReluMLP(transformer_dim, transformer_dim, 1, 3)

    def skips_of_projected(self, stride4: Tensor, stride8: Tensor) -> tuple[Tensor, Tensor]:
        """The skips :meth:`decode` takes, from the encoder's stride-4 and stride-8
        features already through ``conv_s0`` / ``conv_s1`` ((1, C / 8, 4h, 4w) and
        (1, C / 4, 2h, 2w)): :func:`.subpixel.skip_rows`, the second with the second
        upscaling's bias added (``decode_tokens``' per-row biases)."""
        first, second = skip_rows(stride8, stride4)
        return first, second + self.output_upscaling[3].bias.repeat(4)

    def decode(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        sparse_embedding: Tensor,
        dense_embedding: Tensor,
        multimask: bool,
        skips: tuple[Tensor, Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Decode N prompts against one image (arguments as :meth:`MaskDecoder.forward`).

        Parameters
        ----------
        skips : (Tensor, Tensor)
            From :meth:`skips_of_projected`.

        Returns
        -------
        low_res_logits : Tensor
            (N, K, 4h, 4w); K = 3 with ``multimask``, else 1: the single mask, or the
            best-scored candidate where the single mask is unstable (its area changes
            by more than 2 % between logit thresholds -0.05 and 0.05).
        iou_predictions : Tensor
            (N, K) in [0, 1].
        object_score_logits : Tensor
            (N, 1): > 0 when the model sees an object.
        """
        masks, scores, object_scores, _ = self.decode_with_tokens(
            image_embedding, image_pe, sparse_embedding, dense_embedding, multimask, skips
        )
        return masks, scores, object_scores

    def decode_with_tokens(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        sparse_embedding: Tensor,
        dense_embedding: Tensor,
        multimask: bool,
        skips: tuple[Tensor, Tensor],
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`decode` and the masks' output tokens, from which video makes its
        object pointers: (N, 3, C) with ``multimask`` (the candidates'), else (N, 1, C),
        the single mask's token even where an unstable single mask was replaced by a
        candidate (as the reference video model does)."""
        kinds = range(1, self.num_mask_tokens) if multimask else range(self.num_mask_tokens)
        tokens, masks = self.decode_tokens(
            image_embedding,
            image_pe,
            sparse_embedding,
            dense_embedding,
            kinds,
            leading=self.obj_score_token.weight,
            pixel_skips=skips,
        )
        scores = self.iou_prediction_head(tokens[:, 1]).sigmoid()[:, kinds.start :]
        object_scores = self.pred_obj_score_head(tokens[:, 0])
        mask_tokens = tokens[:, 2 : 2 + len(kinds)]  # only the read kinds are returned
        if multimask:
            return masks, scores, object_scores, mask_tokens
        masks, scores = _stable_or_best(masks, scores)
        return masks, scores, object_scores, mask_tokens[:, :1]


def _stable_or_best(masks: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """From (N, 4, ...) logits and (N, 4) scores of the single mask and the three
    candidates: the single mask where it is stable, else the best-scored candidate."""
    single = masks[:, 0].flatten(1)
    inner = (single > STABILITY_DELTA).sum(-1).float()
    outer = (single > -STABILITY_DELTA).sum(-1).float()
    stability = torch.where(outer > 0, inner / outer, torch.ones_like(outer))
    stable = stability >= STABILITY_THRESHOLD
    best = scores[:, 1:].argmax(-1) + 1
    chosen = torch.where(stable, torch.zeros_like(best), best)
    rows = torch.arange(len(masks), device=masks.device)
    return masks[rows, chosen][:, None], scores[rows, chosen][:, None]
