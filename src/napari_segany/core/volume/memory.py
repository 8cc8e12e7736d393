"""Objects through a stack by SAM 2.1's memory: prompted frames and tracked frames.

The bookkeeping of Meta's video predictor, per object (objects never see each
other's memories, so each is tracked on its own):

- A prompt on a frame the object was never tracked on makes an *initial* prompted
  frame: decoded as on an image, no memory. A prompt on a tracked frame is a
  *correction*: decoded on the frame's memory-conditioned features (as tracked, in the
  direction it was tracked), its previous logits fed as the mask prompt. Either way
  the frame becomes a prompted (conditioning) frame -- the reference's
  ``add_all_frames_to_correct_as_cond=True``: without it a later propagation over the
  frame replaces the correction (facebookresearch/sam2 issues 731, 719).
- One click (or none, when tracking) asks for three masks and keeps the best scored;
  a box or several points ask for one.
- A prompted frame's memory is encoded when propagation starts (from its binarised
  mask); a tracked frame's right away (from its mask's sigmoid).
- Tracking a frame conditions its features on the memories of all prompted frames and
  of the six nearest tracked frames behind it, and on the object pointers of the
  prompted frames not ahead of it and of up to 15 tracked frames behind it
  (:func:`..model.sam2_video.condition`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..model.sam2 import Sam2, Sam2Features
from ..model.sam2_video import (
    MAX_POINTERS,
    MEMORY_FRAMES,
    FrameState,
    Sam2Video,
    condition,
    decode_frame,
    encode_memory,
    mask_as_frame,
    raw_features,
)

__all__ = ["MemoryTracker", "ObjectMemory"]


@dataclass
class ObjectMemory:
    """One object's frames.

    Attributes
    ----------
    prompted : dict of int to FrameState
        Conditioning frames (memory encoded when propagation starts).
    tracked : dict of int to FrameState
        Frames propagated to.
    reverse : dict of int to bool
        Every frame the object was tracked on (or passed, prompted): whether that walk
        went backward.
    fresh : set of int
        Prompted frames whose memory is not encoded yet.
    """

    prompted: dict[int, FrameState] = field(default_factory=dict)
    tracked: dict[int, FrameState] = field(default_factory=dict)
    reverse: dict[int, bool] = field(default_factory=dict)
    fresh: set[int] = field(default_factory=set)

    def state(self, index: int) -> FrameState | None:
        """The object's latest output on frame ``index``."""
        state = self.prompted.get(index)
        return self.tracked.get(index) if state is None else state


class MemoryTracker:
    """SAM 2.1 video tracking of several objects through a stack of ``count`` frames.

    Parameters
    ----------
    model, video : Sam2, Sam2Video
    features : callable
        Frame index -> its :class:`Sam2Features` (the session's cached embedding).
    count : int
        Frames in the stack.
    """

    def __init__(
        self,
        model: Sam2,
        video: Sam2Video,
        features: Callable[[int], Sam2Features],
        count: int,
    ) -> None:
        self.model, self.video, self._features, self.count = model, video, features, count
        self.objects: dict[int, ObjectMemory] = {}

    def _frame(self, index: int) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor]:
        features = self._features(index)
        return features.embedding, features.skips, raw_features(self.model, features)

    # --- prompts ----------------------------------------------------------------------
    def prompt(
        self,
        obj: int,
        index: int,
        points_xy: Tensor | None,
        labels: Tensor | None,
        box_xyxy: Tensor | None,
    ) -> FrameState:
        """Prompt object ``obj`` on frame ``index`` with model-frame (1, P, 2) points and
        (1, P) labels and / or a (1, 4) box: all the frame's prompts, each call."""
        memory = self.objects.setdefault(obj, ObjectMemory())
        embedding, skips, raw = self._frame(index)
        earlier = memory.state(index)
        mask_logits = None if earlier is None else earlier.low_res.clamp(-32.0, 32.0)
        clicks = 0 if points_xy is None else points_xy.shape[1]
        multimask = box_xyxy is None and clicks <= 1
        with torch.inference_mode():
            if index in memory.reverse:  # a correction on a tracked frame
                embedding = self._conditioned(memory, index, raw, memory.reverse[index])
            state = decode_frame(
                self.model, self.video, embedding, skips, points_xy, labels, box_xyxy,
                mask_logits, multimask,
            )  # fmt: skip
        return self._prompted(memory, index, state)

    def add_mask(self, obj: int, index: int, mask: Tensor) -> FrameState:
        """Anchor object ``obj`` on frame ``index`` with a (1, 1, S, S) 0 / 1 mask."""
        memory = self.objects.setdefault(obj, ObjectMemory())
        _, skips, raw = self._frame(index)
        with torch.inference_mode():
            state = mask_as_frame(self.model, self.video, raw, skips, mask)
        return self._prompted(memory, index, state)

    def _prompted(self, memory: ObjectMemory, index: int, state: FrameState) -> FrameState:
        memory.prompted[index] = state
        memory.fresh.add(index)
        return state

    def settle(self, obj: int) -> None:
        """Encode the memories of ``obj``'s new prompted frames (propagation's start)."""
        memory = self.objects[obj]
        for index in sorted(memory.fresh):
            _, _, raw = self._frame(index)
            state = memory.prompted[index]
            with torch.inference_mode():
                state.memory = encode_memory(
                    self.video, raw, state, self.model.image_size, binarize=True
                )
            memory.tracked.pop(index, None)
        memory.fresh.clear()

    # --- tracking ---------------------------------------------------------------------
    def track(self, obj: int, index: int, reverse: bool) -> FrameState:
        """Object ``obj`` on frame ``index``: its prompted output there, else tracked
        from its memories (and stored)."""
        memory = self.objects[obj]
        memory.reverse[index] = reverse
        if index in memory.prompted:
            return memory.prompted[index]
        embedding, skips, raw = self._frame(index)
        with torch.inference_mode():
            conditioned = self._conditioned(memory, index, raw, reverse)
            state = decode_frame(self.model, self.video, conditioned, skips, multimask=True)
            state.memory = encode_memory(
                self.video, raw, state, self.model.image_size, binarize=False
            )
        memory.tracked[index] = state
        return state

    def _conditioned(self, memory: ObjectMemory, index: int, raw: Tensor, reverse: bool):
        behind = 1 if reverse else -1  # where the frames it is tracked from lie
        settled = {f: s for f, s in memory.prompted.items() if s.memory is not None}
        memories = [(0, state.memory) for state in settled.values()]
        for slot in range(1, MEMORY_FRAMES):
            state = memory.tracked.get(index + behind * (MEMORY_FRAMES - slot))
            if state is not None and state.memory is not None:
                memories.append((slot, state.memory))
        sign = -1 if reverse else 1
        pointers = [
            ((index - frame) * sign, state.pointer)
            for frame, state in settled.items()
            if (frame >= index if reverse else frame <= index)
        ]
        max_pointers = min(self.count, MAX_POINTERS)
        for distance in range(1, max_pointers):
            frame = index + behind * distance
            if not 0 <= frame < self.count:
                break
            state = memory.tracked.get(frame)
            if state is not None:
                pointers.append((distance, state.pointer))
        return condition(self.video, raw, memories, pointers, max_pointers)
