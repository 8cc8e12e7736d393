"""A volume's objects propagated by SAM 2.1's memory (``core.volume.memory``).

Used by :class:`~napari_segany.volume_api.Volume` when the session's model carries
video parts (a SAM 2.1 checkpoint with its memory entries); every other model
propagates by projection. Here prompts become model-frame tensors, slices become
cached embeddings, and tracked frames become the volume's stored masks.

Walks follow Meta's video predictor: a propagation starts at the earliest slice
prompted since the last one (over the objects it propagates), goes forward to the
last slice, then backward from the same slice to the first; every slice of every
such object is tracked again (a new prompted slice changes the memory of all of
them). Objects without new prompts are not walked: their masks stay.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .core.model.sam2_video import video_parts
from .core.predictor import square_masks
from .core.progress import Progress
from .core.prompts import to_model_frame
from .core.results import SegmentResult
from .core.volume.memory import MemoryTracker
from .core.volume.tracks import SliceMask, SlicePrompt, Track

if TYPE_CHECKING:
    from .core.embeddings import Embedding
    from .core.model.sam2_video import FrameState
    from .volume_api import Volume

__all__ = ["MemoryWalks", "memory_walks"]


def memory_walks(volume: Volume, model) -> MemoryWalks | None:
    """The memory propagation of ``volume`` with the session's ``model``, or None when
    the model has no video parts (projection)."""
    video = video_parts(model)
    return None if video is None else MemoryWalks(volume, model, video)


class MemoryWalks:
    """Prompts and walks of a volume through a :class:`MemoryTracker`."""

    def __init__(self, volume: Volume, model, video) -> None:
        self.volume = volume
        self.size = int(model.image_size)
        self.tracker = MemoryTracker(model, video, self._features, volume.n_slices)
        self._last: tuple[int, Embedding] | None = None

    def _embedding(self, index: int) -> Embedding:
        """Slice ``index``'s embedding; the last one is kept within one prompt or walk,
        so the objects of a walk share one read (and content hash) of each slice."""
        if self._last is None or self._last[0] != index:
            self._last = (index, self.volume.embedding(index))
        return self._last[1]

    def _features(self, index: int):
        return self._embedding(index).features

    def _to_frame(self, values: np.ndarray, index: int) -> torch.Tensor:
        """(..., 2k) (y, x, ...) values on slice ``index`` -> model-frame (x, y, ...)."""
        embedding = self._embedding(index)
        frame = to_model_frame(values, embedding.input_hw, embedding.original_hw)
        return torch.as_tensor(frame, dtype=torch.float32, device=self.tracker.model.device)

    def _plane_mask(self, state: FrameState) -> np.ndarray:
        return square_masks(state.low_res, self.volume.hw)[0, 0]

    # --- prompts ----------------------------------------------------------------------
    def prompt(self, track: Track, index: int, given: SlicePrompt) -> SegmentResult:
        """Decode ``given`` (all of slice ``index``'s prompts) for ``track``."""
        self._last = None  # the slice is made the session's current plane again
        points = labels = box = None
        if given.points_yx is not None:
            points = self._to_frame(np.asarray(given.points_yx), index)[None]
            labels = torch.as_tensor(given.labels, dtype=torch.int64, device=points.device)[None]
        if given.box_yxyx is not None:
            box = self._to_frame(np.asarray(given.box_yxyx), index)[None]
        state = self.tracker.prompt(track.obj_id, index, points, labels, box)
        mask = self._plane_mask(state)
        logits = state.low_res[0].clamp(-32.0, 32.0).cpu().numpy()
        return SegmentResult(mask[None], np.array([state.score], np.float32), logits)

    def add_mask(self, track: Track, index: int, mask: np.ndarray) -> None:
        """Anchor ``track`` on slice ``index`` with an (H, W) bool mask."""
        self._last = None
        tensor = torch.as_tensor(mask, dtype=torch.float32)[None, None]
        if tuple(mask.shape) != (self.size, self.size):
            tensor = F.interpolate(tensor, (self.size, self.size), mode="bilinear", antialias=True)
            tensor = tensor.ge(0.5).float()
        self.tracker.add_mask(track.obj_id, index, tensor.to(self.tracker.model.device))

    def remove(self, obj_id: int) -> None:
        self.tracker.objects.pop(obj_id, None)

    # --- walks ------------------------------------------------------------------------
    def walks(
        self, tracks: Sequence[Track], steps: Sequence[int], max_slices: int | None = None
    ) -> Generator[Progress, None, None]:
        """Propagate ``tracks`` that have new prompts in the directions ``steps``, at
        most ``max_slices`` from the start (module docstring); each slice's mask is
        stored as soon as it is tracked. A walk cut by ``max_slices`` stays due."""
        self._last = None
        due = [track for track in tracks if any(step in steps for _, step in track.stale)]
        for track in due:
            self.tracker.settle(track.obj_id)
        count = self.volume.n_slices
        plan = []
        for step in steps:
            starts = [a for t in due for a, s in t.stale if s == step and a in t.prompts]
            if starts:
                start = min(starts)
                far = count if max_slices is None else max_slices + 1
                end = min(count, start + far) if step > 0 else max(-1, start - far)
                plan.append((step, start, range(start, end, step)))
        done, total = 0, sum(len(frames) for _, _, frames in plan) * len(due)
        for step, start, frames in plan:
            yield Progress(done, total, f"from slice {start}")
            for index in frames:
                for track in due:
                    self._track(track, index, step < 0, start)
                    done += 1
                yield Progress(done, total, f"slice {index}")
            if not 0 <= frames[-1] + step < count:  # not cut short by max_slices
                for track in due:
                    track.stale = {(a, s) for a, s in track.stale if s != step}
        yield Progress(total, total, "propagated")

    def _track(self, track: Track, index: int, reverse: bool, start: int) -> None:
        state = self.tracker.track(track.obj_id, index, reverse)
        if index in track.prompts:
            return  # the prompted slice keeps what the user accepted there
        track.masks[index] = SliceMask.of(self._plane_mask(state), state.score, start)
