"""Test doubles: a session that 'segments' a disc around the first positive point.

:class:`DiscSession` implements the app's :class:`~napari_segany.app.sessions.PromptSession`
(``predictor.describe_channels``, ``prepare``, ``set_image``, ``segment``), and lets
layer and widget tests assert *where* a mask lands (plane, scale, translate) without
any model. A box prompt gives the filled box itself.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import numpy as np

from napari_segany.app.sessions import PromptSession
from napari_segany.core.channels import describe_channels
from napari_segany.core.results import SegmentResult


@dataclass(frozen=True)
class FakeEmbedding:
    original_hw: tuple[int, int]
    plane_sum: float  # identifies the plane content


class DiscSession(PromptSession):
    """Stands in for ``SegAny``: points give discs of radius 3, 5, 7 (best: 5) by default."""

    def __init__(
        self,
        embed_seconds: float = 0.0,
        fail_with: BaseException | None = None,
        radii: tuple[float, float, float] = (3, 5, 7),
    ):
        self.embed_seconds = embed_seconds
        self.radii = radii
        self.fail_with = fail_with
        self.planes: list[np.ndarray] = []
        self.embed_threads: list[str] = []
        self.cache: dict = {}
        self.segment_calls: list[dict] = []
        self._embedding: FakeEmbedding | None = None
        self.predictor = _SamChannels()

    def __repr__(self) -> str:
        return "DiscSession(fake model: discs around clicks, filled boxes)"

    def embedding_key(self, image, contrast_limits=None, channels=None) -> tuple:
        array = np.asarray(image)
        return (
            array.tobytes(),
            array.shape,
            None if contrast_limits is None else tuple(contrast_limits),
        )

    def embed(self, image, contrast_limits=None, channels=None) -> FakeEmbedding:
        key = self.embedding_key(image, contrast_limits)
        if key in self.cache:
            return self.cache[key]
        self.embed_threads.append(threading.current_thread().name)
        time.sleep(self.embed_seconds)
        if self.fail_with is not None:
            raise self.fail_with
        self.planes.append(np.asarray(image))
        embedding = FakeEmbedding(np.asarray(image).shape[:2], float(np.sum(image)))
        self.cache[key] = embedding
        return embedding

    def prepare(
        self, image, contrast_limits=None, channels=None, *, run=True, region_yxyx=None
    ) -> FakeEmbedding | None:
        """Preparing a plane is embedding it (the fake has no per-plane rules)."""
        if not run:
            return self.cache.get(self.embedding_key(image, contrast_limits, channels))
        return self.embed(image, contrast_limits, channels)

    def set_image(
        self, image, contrast_limits=None, channels=None, *, embedding=None
    ) -> FakeEmbedding:
        if embedding is None:
            embedding = self.prepare(image, contrast_limits, channels)
        self._embedding = embedding
        return embedding

    def segment(
        self, points_yx=None, labels=None, box_yxyx=None, mask_input=None, multimask=True
    ) -> SegmentResult:
        self.segment_calls.append(
            {"points_yx": points_yx, "box_yxyx": box_yxyx, "plane_sum": self._embedding.plane_sum}
        )
        height, width = self._embedding.original_hw
        yy, xx = np.mgrid[0:height, 0:width]
        if box_yxyx is not None:
            boxes = np.asarray(box_yxyx, dtype=float).reshape(-1, 4)
            masks = np.stack(
                [(yy >= y0) & (yy <= y1) & (xx >= x0) & (xx <= x1) for y0, x0, y1, x1 in boxes]
            )[:, None].repeat(3 if multimask else 1, axis=1)
            scores = np.full(masks.shape[:2], 0.8, np.float32)
            if np.ndim(box_yxyx) == 1:
                masks, scores = masks[0], scores[0]
            return SegmentResult(masks, scores, np.zeros((*scores.shape, 256, 256), np.float32))
        points_yx = np.asarray(points_yx, dtype=float)
        labels = np.ones(len(points_yx)) if labels is None else np.asarray(labels)
        cy, cx = points_yx[np.flatnonzero(labels == 1)[0]]
        distance = np.hypot(yy - cy, xx - cx)
        masks = np.stack([distance <= r for r in self.radii])
        scores = np.array([0.5, 0.9, 0.7], dtype=np.float32)
        return SegmentResult(masks, scores, np.zeros((3, 256, 256), np.float32))

    def without_embedding(self):
        return contextlib.nullcontext()  # planes are always seen in one pass

    def fork(self):
        return self  # (the fakes' jobs record their calls on the session itself)


def tiny_architecture(window_size: int = 4):
    """A SAM-shaped architecture small enough for CPU tests (ViT 32 wide, 2 blocks).

    ``decoder_num_heads`` stays SAM's 8: checkpoints do not store it, so the loader
    assumes 8 when it detects a custom architecture from a file.
    """
    from napari_segany.core.model.build import Architecture

    return Architecture(
        "tiny",
        "vit",
        {
            "patch_size": 16,
            "embed_dim": 32,
            "depth": 2,
            "num_heads": 2,
            "window_size": window_size,
            "global_attn_indexes": (1,),
        },
        prompt_embed_dim=32,
        mask_in_chans=4,
        decoder_num_heads=8,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    )


def tiny_session(image_size: int = 256):
    """A real ``SegAny`` on a tiny random-weight ViT (fast on CPU, meaningless masks)."""
    import torch

    from napari_segany.api import SegAny
    from napari_segany.core.model.build import build_sam

    tiny = tiny_architecture()
    torch.manual_seed(0)
    sam = build_sam(tiny, image_size=image_size)
    return SegAny.from_model(sam, device="cpu", precision="fp32", name="tiny")


class _SamChannels:
    """The fake's ``predictor``: SAM's channel rule; constant channels count as empty."""

    def describe_channels(self, plane) -> str:
        if not isinstance(plane, np.ndarray):
            return describe_channels(plane)
        signal = None
        if plane.ndim == 3:
            signal = [bool(np.ptp(plane[..., c]) > 0) for c in range(plane.shape[-1])]
        return describe_channels(plane.shape, signal=signal)
