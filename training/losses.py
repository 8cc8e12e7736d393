"""SAM's training objective: focal + dice on the masks, MSE on the predicted IoU.

For a single-click prompt the decoder returns three candidates and only the best one
(lowest mask loss) is trained on, as in SAM; the IoU head is trained on every candidate
against the IoU that candidate really has, so that ``scores`` rank masks and everything
mode's thresholds keep good masks. With ``background_all`` a click on background (an
empty target, the same for every candidate) trains every candidate's mask loss: trained
on the best one only, one candidate of model v3 kept winning those clicks and stayed
empty (docs/models.md). Off by default: the shipped model was trained without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

FOCAL_WEIGHT = 5.0  # SAM uses 20 : 1 from a pretrained encoder; see docs/models.md
FOCAL_ALPHA = 0.5
FOCAL_GAMMA = 2.0


def focal_loss(
    logits: Tensor, truth: Tensor, alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA
) -> Tensor:
    """Sigmoid focal loss per mask: (N, K, S, S) logits, (N, 1, S, S) truth -> (N, K)."""
    truth = truth.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, truth.expand_as(logits), reduction="none")
    prob = logits.sigmoid()
    p_true = prob * truth + (1 - prob) * (1 - truth)
    weight = alpha * truth + (1 - alpha) * (1 - truth)
    return (weight * (1 - p_true) ** gamma * bce).mean(dim=(-2, -1))


def dice_loss(logits: Tensor, truth: Tensor) -> Tensor:
    """1 - soft Dice per mask: (N, K, S, S), (N, 1, S, S) -> (N, K)."""
    prob = logits.sigmoid()
    truth = truth.to(prob.dtype)
    overlap = (prob * truth).sum(dim=(-2, -1))
    total = prob.sum(dim=(-2, -1)) + truth.sum(dim=(-2, -1))
    return 1.0 - (2.0 * overlap + 1.0) / (total + 1.0)


@torch.no_grad()
def mask_iou(logits: Tensor, truth: Tensor) -> Tensor:
    """IoU of ``logits > 0`` with the truth: (N, K, S, S), (N, 1, S, S) -> (N, K)."""
    predicted = logits > 0
    inter = (predicted & truth).sum(dim=(-2, -1)).float()
    union = (predicted | truth).sum(dim=(-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def prompt_loss(
    low_res_logits: Tensor,
    iou_predictions: Tensor,
    truth: Tensor,
    background: Tensor,
    focal_weight: float = FOCAL_WEIGHT,
    focal_gamma: float = FOCAL_GAMMA,
    background_all: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Loss of one decoder call.

    Parameters
    ----------
    low_res_logits : (N, K, s, s)
        Decoder logits; upsampled bilinearly to the truth's (S, S) as the predictor does.
    iou_predictions : (N, K)
    truth : (N, S, S) bool
    background : (N,) bool
        Background clicks: their IoU target is 0 (and with ``background_all`` every
        candidate's mask loss counts, mean over candidates).

    Returns
    -------
    loss : scalar Tensor
        Mean over prompts of the best candidate's mask loss plus the IoU MSE.
    best : (N,) int64
        Index of the best candidate of each prompt.
    best_iou : (N,) float
        Its true IoU.
    """
    size = truth.shape[-2:]
    logits = F.interpolate(low_res_logits, size=size, mode="bilinear", align_corners=False)
    target = truth[:, None]
    focal = focal_loss(logits, target, gamma=focal_gamma)
    per_mask = focal_weight * focal + dice_loss(logits, target)
    best = per_mask.argmin(dim=1)
    rows = torch.arange(len(best), device=best.device)
    ious = mask_iou(logits, target)
    iou_target = torch.where(background[:, None], torch.zeros_like(ious), ious)
    iou_loss = F.mse_loss(iou_predictions.float(), iou_target, reduction="none").sum(dim=1)
    mask_loss = per_mask[rows, best]
    if background_all:
        mask_loss = torch.where(background, per_mask.mean(dim=1), mask_loss)
    loss = (mask_loss + iou_loss).mean()
    return loss, best, ious[rows, best]
