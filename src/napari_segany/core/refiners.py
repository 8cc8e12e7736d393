"""Prompt refiners any model may declare (``core.plugins.PromptRefiner``).

- :class:`ClipToBox` (``"clip_to_box"``): a box's masks are cut to the box.
- :class:`ClickedParts` (``"clicked_parts"``): a mask keeps only its connected parts
  under a positive click; in everything mode each grid point's masks are reduced the
  same way (``GridParams.clicked_component_only``).

Neither has per-plane state.
"""

from __future__ import annotations

from typing import Any

from .mask_ops import clip_masks_to_boxes, keep_clicked_components
from .plugins import PlaneContext, Prompt
from .results import SegmentResult


class _Stateless:
    """A refiner without per-plane state."""

    def prepare(self, plane: PlaneContext) -> Any:
        return None


class ClipToBox(_Stateless):
    """Pixels outside a box are never part of its object (``mask_ops`` rule)."""

    name = "clip_to_box"

    def refine(self, result: SegmentResult, prompt: Prompt, plane: PlaneContext) -> SegmentResult:
        if prompt.boxes_yxyx is None:
            return result
        return result.with_masks(clip_masks_to_boxes(result.masks, prompt.boxes_yxyx))


class ClickedParts(_Stateless):
    """A mask keeps only its connected parts under a positive click."""

    name = "clicked_parts"

    def refine(self, result: SegmentResult, prompt: Prompt, plane: PlaneContext) -> SegmentResult:
        if prompt.points_yx is None:
            return result
        kept = keep_clicked_components(result.masks, prompt.points_yx, prompt.labels)
        return result.with_masks(kept)
