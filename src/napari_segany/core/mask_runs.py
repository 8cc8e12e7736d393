"""Binary masks stored as runs of True pixels, for everything mode's candidates.

For each mask: the flat row-major start and end (exclusive) of every run of ``True``
in its frame (:class:`MaskRuns`), encoded on the masks' device (:func:`encode_runs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["MaskRuns", "encode_runs", "encode_runs_torch"]


@dataclass(frozen=True)
class MaskRuns:
    """Many binary masks of one (H, W) frame as runs of True pixels.

    Masks with more run edges than their low-resolution logits have values (speckle,
    e.g. from untrained weights) keep those logits instead, so memory per mask stays
    bounded whatever the mask's shape.

    Attributes
    ----------
    edges : numpy.ndarray, (E,) int32
        For every mask in turn, alternating run starts and (exclusive) run ends as flat
        row-major indices into its frame (none for masks in ``dense``).
    offsets : numpy.ndarray, (N + 1,) int64
        Mask ``i`` owns ``edges[offsets[i]:offsets[i + 1]]``.
    frame_hw : (int, int)
        (H, W) of the frame the flat indices refer to.
    dense : dict of int to torch.Tensor (h, w) float32 or bfloat16 (as decoded)
        Low-resolution logits of the masks stored that way.
    to_frame : callable, optional
        ``(m, h, w) logits -> (m, H, W) logits``; needed when ``dense`` is not empty.
    """

    edges: np.ndarray
    offsets: np.ndarray
    frame_hw: tuple[int, int]
    dense: dict = field(default_factory=dict)
    to_frame: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        """Memory held, in bytes."""
        held = sum(t.numel() * t.element_size() for t in self.dense.values())
        return self.edges.nbytes + self.offsets.nbytes + held

    def decode_rows(self, index: int, row0: int, row1: int) -> np.ndarray:
        """Mask ``index`` restricted to rows ``row0:row1`` of its frame, (rows, W) bool."""
        if index in self.dense:
            with torch.inference_mode():
                logits = self.to_frame(self.dense[index][None])[0, row0:row1]
                return (logits > 0).cpu().numpy()
        width = self.frame_hw[1]
        edges = self.edges[self.offsets[index] : self.offsets[index + 1]].astype(np.int64)
        edges = np.clip(edges - row0 * width, 0, (row1 - row0) * width)
        steps = np.zeros((row1 - row0) * width + 1, dtype=np.int32)
        np.add.at(steps, edges[0::2], 1)
        np.add.at(steps, edges[1::2], -1)
        return (np.cumsum(steps[:-1]) > 0).reshape(row1 - row0, width)


def encode_runs(
    masks: np.ndarray | torch.Tensor, max_edges: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run edges of a batch of masks (see :class:`MaskRuns`).

    Parameters
    ----------
    masks : numpy.ndarray or torch.Tensor, (N, H, W) bool
    max_edges : int, optional
        Masks with more edges than this are not encoded (``too_many``; no edges, count 0).

    Returns
    -------
    edges : numpy.ndarray, (E,) int32
    counts : numpy.ndarray, (N,) int64
        Number of edges of each mask (twice its number of runs).
    too_many : numpy.ndarray, (N,) bool
    """
    if isinstance(masks, torch.Tensor) and masks.device.type != "cpu":
        return encode_runs_torch(masks, max_edges)
    masks = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    limit = np.inf if max_edges is None else max_edges
    counts = np.zeros(masks.shape[0], dtype=np.int64)
    too_many = np.zeros(masks.shape[0], dtype=bool)
    parts = []
    for index, mask in enumerate(masks):
        flat = mask.reshape(-1)
        changes = flat[1:] != flat[:-1]  # change between pixel i and i + 1
        count = np.count_nonzero(changes) + int(flat[0]) + int(flat[-1])
        if count > limit:
            too_many[index] = True
            continue
        if flat[0]:
            parts.append(np.zeros(1, dtype=np.int32))
        parts.append(np.flatnonzero(changes).astype(np.int32) + 1)
        if flat[-1]:
            parts.append(np.array([flat.size], dtype=np.int32))
        counts[index] = count
    return (np.concatenate(parts) if parts else np.zeros(0, np.int32)), counts, too_many


def encode_runs_torch(
    masks: torch.Tensor, max_edges: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`encode_runs` computed on the masks' device (e.g. CUDA), so that only the
    run edges travel to the host; the same result as the numpy version.

    With the mask framed by a False pixel on each side, an edge at flat index ``i``
    (0 <= i <= H * W) is a change between pixels ``i - 1`` and ``i``: the numpy
    version's leading 0, its changes + 1 and its trailing ``H * W`` in one pass.
    """
    flat = masks.flatten(1)
    border = flat.new_zeros(flat.shape[0], 1)
    framed = torch.cat([border, flat, border], dim=1)
    is_edge = framed[:, 1:] != framed[:, :-1]  # (N, H * W + 1)
    counts = is_edge.sum(dim=1)
    too_many = (
        counts > max_edges if max_edges is not None else torch.zeros_like(counts, dtype=torch.bool)
    )
    is_edge[too_many] = False
    edges = torch.nonzero(is_edge)[:, 1]  # row-major: mask by mask, in increasing order
    counts = counts.masked_fill(too_many, 0)
    return (
        edges.to(torch.int32).cpu().numpy(),
        counts.to(torch.int64).cpu().numpy(),
        too_many.cpu().numpy(),
    )
