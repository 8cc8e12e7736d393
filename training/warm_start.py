"""Helps for training a SAM-design model from scratch on two CPU cores.

SAM starts from an MAE-pretrained encoder and trains for 90k steps on 256 GPUs; here
there are minutes. Three things make the from-scratch problem converge fast enough:

- positional frequencies: the fixed random Fourier frequencies of the prompt encoder
  (a buffer stored with the weights) are drawn with magnitudes between 1 and 12
  instead of SAM's standard normal, so that the encoding separates positions a few
  pixels apart in the 512 px frame (nuclei can be 3 px in radius there);
- attention that starts local: the query and key projections of the decoder's
  cross-attentions start as scaled selections of (sin, cos) pairs of the positional
  encoding, so a point prompt attends to the embedding cells around it from step 0
  (the dot product of two encodings is a kernel peaked at equal positions);
- an auxiliary dense head (a linear ``core.model.foreground_head.ForegroundHead``,
  discarded after training) that predicts foreground and object borders at full
  window resolution from the embedding, so that the encoder learns object features
  before the decoder can use them. Its loss (:func:`auxiliary_loss`) is added to the
  prompt loss. The shipped model's own foreground head is trained after the rest, on
  the frozen encoder (``train_builtin``, phase 3).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from napari_segany.core.model.sam import Sam

from .losses import dice_loss

FREQUENCY_RANGE = (1.0, 12.0)
ATTENTION_SCALE = 1.0


@torch.no_grad()
def set_position_frequencies(model: Sam, seed: int) -> None:
    """Redraw ``positional_encoding_gaussian_matrix``: random directions, magnitudes
    log-uniform in :data:`FREQUENCY_RANGE`."""
    matrix = model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    rng = np.random.default_rng(seed)
    count = matrix.shape[1]
    angles = rng.uniform(0, 2 * np.pi, count)
    low, high = np.log(FREQUENCY_RANGE[0]), np.log(FREQUENCY_RANGE[1])
    magnitudes = np.exp(rng.uniform(low, high, count))
    values = np.stack([np.cos(angles), np.sin(angles)]) * magnitudes
    matrix.copy_(torch.as_tensor(values, dtype=matrix.dtype))


@torch.no_grad()
def local_attention_init(model: Sam, scale: float = ATTENTION_SCALE) -> None:
    """Start every decoder cross-attention's q/k as a selection of (sin, cos) pairs."""
    transformer = model.mask_decoder.transformer
    attentions = [transformer.final_attn_token_to_image]
    for layer in transformer.layers:
        attentions += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    for attention in attentions:
        internal, width = attention.q_proj.weight.shape
        half = width // 2  # encoding channels: sin of each frequency, then cos
        selection = torch.zeros(internal, width)
        for row in range(internal // 2):
            frequency = row % half
            selection[2 * row, frequency] = scale
            selection[2 * row + 1, half + frequency] = scale
        for projection in (attention.q_proj, attention.k_proj):
            projection.weight.copy_(selection + 0.02 * torch.randn_like(selection))
            projection.bias.zero_()


def borders(labels: np.ndarray) -> np.ndarray:
    """(B, S, S) bool: object pixels with a 4-neighbour of another value."""
    edge = np.zeros(labels.shape, bool)
    differ_y = labels[:, 1:] != labels[:, :-1]
    differ_x = labels[:, :, 1:] != labels[:, :, :-1]
    edge[:, 1:] |= differ_y
    edge[:, :-1] |= differ_y
    edge[:, :, 1:] |= differ_x
    edge[:, :, :-1] |= differ_x
    return edge & (labels > 0)


def contacts(labels: np.ndarray, reach: int) -> np.ndarray:
    """(B, S, S) bool: object pixels with a pixel of another object within ``reach``
    pixels (Chebyshev distance): the band where touching objects meet."""
    size = (1, 2 * reach + 1, 2 * reach + 1)
    above = ndimage.maximum_filter(labels, size=size)
    missing = np.iinfo(labels.dtype).max if labels.dtype.kind in "iu" else np.inf
    below = ndimage.minimum_filter(np.where(labels > 0, labels, missing), size=size)
    return (labels > 0) & ((above != labels) | (below != labels))


def auxiliary_loss(
    logits: Tensor, labels: np.ndarray, contact_reach: int = 0, contact_weight: float = 1.0
) -> Tensor:
    """BCE + Dice on the foreground, BCE (positives weighted x4) on borders.

    With ``contact_reach`` > 0 (the shipped head, phase 3) the border target also
    holds the :func:`contacts` band and each pixel of it weighs ``contact_weight``:
    touching objects meet along a wider, heavier border, which the head learns to
    mark more surely than a one-pixel line, so that the seeds of ``core/objects.py``
    split them."""
    foreground = torch.from_numpy(labels > 0).float().to(logits.device)
    edge = borders(labels)
    weights = None
    if contact_reach > 0:
        band = contacts(labels, contact_reach)
        edge = edge | band
        weights = torch.from_numpy(np.where(band, contact_weight, 1.0).astype(np.float32))
        weights = weights.to(logits.device)
    border = torch.from_numpy(edge).float().to(logits.device)
    fg_logits, border_logits = logits[:, 0], logits[:, 1]
    loss = F.binary_cross_entropy_with_logits(fg_logits, foreground)
    loss = loss + dice_loss(fg_logits[:, None], foreground[:, None]).mean()
    weight = torch.tensor(4.0, device=logits.device)
    return loss + F.binary_cross_entropy_with_logits(
        border_logits, border, weight=weights, pos_weight=weight
    )
