"""The one answer to a prompt: :class:`SegmentResult`.

The predictor, every prompt refiner, the session, the scripting helpers and the widget
pass this type along; a refiner returns a new one (results are frozen).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class SegmentResult:
    """Candidate masks for one prompt set, or for N boxes at once.

    Attributes
    ----------
    masks : numpy.ndarray, ([N,] K, H, W) bool
        K = 3 ambiguity candidates with ``multimask=True``, else 1; (H, W) is the
        plane's size. The leading N axis exists only when N boxes were given as (N, 4).
    scores : numpy.ndarray, ([N,] K) float32
        The model's predicted IoU of each mask (pick the best with ``argmax``).
    logits : numpy.ndarray, ([N,] K, h, w) float32
        Low-resolution logits (256 x 256 for SAM); one of them, passed back as
        ``mask_input``, refines the prompt.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray

    @property
    def batched(self) -> bool:
        """Whether the arrays have the leading N (one per box) axis."""
        return self.masks.ndim == 4

    def per_object(self) -> SegmentResult:
        """The same result with the leading N axis, (1, K, ...) for one prompt set."""
        if self.batched:
            return self
        return SegmentResult(self.masks[None], self.scores[None], self.logits[None])

    def with_masks(self, masks: np.ndarray) -> SegmentResult:
        """A copy with other masks of the same shape (scores and logits kept)."""
        if masks.shape != self.masks.shape:
            raise ValueError(f"masks of shape {masks.shape} replace {self.masks.shape}")
        return replace(self, masks=masks)

    def pick(self, candidate: int | None = None) -> np.ndarray:
        """(N, H, W) bool: candidate ``candidate`` of each object (modulo K), or each
        object's best-scored one (None)."""
        objects = self.per_object()
        if candidate is None:
            chosen = np.argmax(objects.scores, axis=1)
        else:
            chosen = np.full(len(objects.masks), candidate % objects.masks.shape[1])
        return objects.masks[np.arange(len(objects.masks)), chosen]

    def best(self) -> np.ndarray:
        """(N, H, W) bool: each object's best-scored candidate."""
        return self.pick(None)
