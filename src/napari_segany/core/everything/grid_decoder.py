"""The prompt path as everything mode runs it: one embedding, batches of single points.

:class:`GridDecoder` scales grid points to the model frame, moves the embedding to the
device once per embedding (so the mask decoder's prepared image side is reused by every
batch), and picks the compute precision:

- ``"fp32"``: ``Sam.decode`` itself, float32 throughout.
- ``"bf16"`` (what ``precision="auto"`` resolves to on CPUs and GPUs with native bf16):
  the mask decoder runs on a bf16 copy of its weights, with the embedding, positional
  encoding and prompt tokens cast once. On a 2-core AVX512-BF16 CPU it is about 20 %
  faster per point (ViT-B decoder, 64 points per batch); with random weights the masks
  agree with the float32 ones to IoU >= 0.98 and predicted IoUs to about 0.01 (bf16 has
  a resolution of 0.004 there). Interactive prediction (``Predictor.predict``) stays
  float32.

:meth:`GridDecoder.refine` is the optional mask-to-mask step of SAM 2's generator
(``use_m2m``), always in float32.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..embeddings import Embedding
from ..model.sam import Sam

# Candidates refined per decoder call (each carries its own dense mask prompt, 4 MiB
# per 256-channel 64 x 64 embedding, through the whole transformer).
_REFINE_PROMPTS = 16


class GridDecoder:
    """Decode single-point prompts against one embedding at a time (see module docstring).

    Parameters
    ----------
    model : Sam
    device : torch.device
    precision : {"fp32", "bf16"}
    """

    def __init__(self, model: Sam, device: torch.device, precision: str) -> None:
        self.model = model
        self.device = torch.device(device)
        # SAM 2 (a square frame) decodes with its own fp32 decode: no bf16 copy yet
        bf16 = precision == "bf16" and not model.square_frame
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        self._decoder = _cast_copy(model.mask_decoder, self.dtype) if bf16 else None
        self._source: Embedding | None = None
        self._inputs: tuple[torch.Tensor, ...] = ()

    def decode(
        self,
        embedding: Embedding,
        points_xy: np.ndarray | None,
        boxes_xyxy: np.ndarray | None = None,
        multimask: bool = True,
    ) -> tuple[torch.Tensor, ...]:
        """Masks of many prompts, each a single positive point or a box (or both).

        Parameters
        ----------
        embedding : Embedding
            Of the plane or crop the prompts lie in.
        points_xy : numpy.ndarray, (n, 2) float, or None
            Points as (x, y) in pixels of that plane or crop.
        boxes_xyxy : numpy.ndarray, (n, 4) float, optional
            Boxes as (x0, y0, x1, y1) in the same pixels, one per prompt.
        multimask : bool
            Three candidates per prompt (SAM's grid) or one (micro-sam's APG).

        Returns
        -------
        low_res_logits : torch.Tensor, (n, K, 256, 256), float32 or bfloat16
            K = 3 with ``multimask``, else 1.
        iou_predictions : torch.Tensor, (n, K) float32
        """
        model_xy = labels = model_boxes = None
        if points_xy is not None:
            model_xy = self._model_xy(embedding, points_xy)
            labels = torch.ones(model_xy.shape[:2], dtype=torch.int64, device=self.device)
        if boxes_xyxy is not None:
            corners_xy = np.asarray(boxes_xyxy, np.float64).reshape(-1, 2)
            model_boxes = self._model_xy(embedding, corners_xy).reshape(-1, 4)
        points = None if model_xy is None else (model_xy, labels)
        with torch.inference_mode():
            if self.dtype == torch.float32:
                features = self._features(embedding)[0]
                return self.model.decode(features, model_xy, labels, model_boxes, None, multimask)
            sparse, dense = self.model.prompt_encoder(points, model_boxes, None)
            features, image_pe, dense = self._features(embedding, dense)
            sparse = sparse.to(self.dtype)
            low_res, iou = self._decoder(features, image_pe, sparse, dense, multimask)
            return low_res, iou.float()

    def refine(
        self, embedding: Embedding, points_xy: np.ndarray, low_res: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One mask-to-mask step (SAM 2's automatic generator with ``use_m2m``): every
        candidate decoded again from its point, its own low-resolution logits (clamped
        as the model returns them) as the mask prompt, one mask each, float32.

        Parameters
        ----------
        embedding : Embedding
        points_xy : numpy.ndarray, (n, 2) float
            As for :meth:`decode`.
        low_res : torch.Tensor, (n, K, h, w)
            :meth:`decode`'s logits of these points.

        Returns
        -------
        low_res_logits : torch.Tensor, (n, K, h, w) float32
            The refined candidate in place of each.
        iou_predictions : torch.Tensor, (n, K) float32
        """
        count, kinds = low_res.shape[:2]
        model_xy = self._model_xy(embedding, points_xy).repeat_interleave(kinds, dim=0)
        labels = torch.ones(model_xy.shape[:2], dtype=torch.int64, device=self.device)
        masks_in = low_res.flatten(0, 1)[:, None].float()
        limit = self.model.returned_logit_limit
        if limit is not None:
            masks_in = masks_in.clamp(-limit, limit)
        features = embedding.features.to(self.device, torch.float32)
        logits, scores = [], []
        with torch.inference_mode():
            for start in range(0, len(masks_in), _REFINE_PROMPTS):
                part = slice(start, start + _REFINE_PROMPTS)
                decoded = self.model.decode(
                    features, model_xy[part], labels[part], None, masks_in[part], False
                )
                logits.append(decoded[0][:, 0])
                scores.append(decoded[1][:, 0].float())
        refined = torch.cat(logits).view(count, kinds, *low_res.shape[-2:])
        return refined, torch.cat(scores).view(count, kinds)

    def _model_xy(self, embedding: Embedding, points_xy: np.ndarray) -> torch.Tensor:
        """(n, 1, 2) float32 points in the model frame, on the device."""
        hw = np.asarray(embedding.original_hw, dtype=np.float64)
        scale_xy = np.asarray(embedding.input_hw[::-1], dtype=np.float64) / hw[::-1]
        model_xy = torch.as_tensor(points_xy * scale_xy, dtype=torch.float32)
        return model_xy.to(self.device)[:, None, :]

    def _features(self, embedding: Embedding, dense: torch.Tensor | None = None) -> tuple:
        """(features, positional encoding, dense prompt) on the device, cast once.

        Keeping the same tensors for every batch of an embedding lets the decoder reuse
        its prepared image side. Without a mask prompt the dense prompt embedding is the
        same learned vector for every point, so the first batch's serves them all.
        """
        if self._source is not embedding:
            features = embedding.features.to(self.device, self.dtype)
            if self.dtype == torch.float32:  # decode() takes only the features
                self._source, self._inputs = embedding, (features,)
                return self._inputs
            image_pe = self.model.dense_positional_encoding().to(self.dtype)
            cast = None if dense is None else dense.to(self.dtype)
            self._source, self._inputs = embedding, (features, image_pe, cast)
        return self._inputs


def _cast_copy(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of ``module`` with parameters and buffers in ``dtype`` (the original is kept).

    A cached prepared image (the decoder's ``_image_cache``) is not copied.
    """
    cache = getattr(module, "_image_cache", None)
    memo = {} if cache is None else {id(cache): None}
    return copy.deepcopy(module, memo).to(dtype)
