"""Scripting API: a Segment Anything session on one model.

>>> from napari_segany import SegAny
>>> sam = SegAny("vit_b_lm")                       # doctest: +SKIP
>>> sam.set_image(stack[12], contrast_limits=(100, 3000))   # doctest: +SKIP
>>> result = sam.segment(points_yx=[[140, 210]], labels=[1])  # doctest: +SKIP
>>> best = result.masks[result.scores.argmax()]     # doctest: +SKIP

Coordinates are napari's (row, col) = (y, x) in pixels of the plane.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xxhash

from .core.embeddings import Embedding, EmbeddingCache
from .core.errors import NoImageError
from .core.image import to_model_rgb, validate_plane
from .core.model.sam import Sam
from .core.predictor import Predictor

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 1 << 30  # 1 GiB: 256 SAM embeddings (64 x 64 x 256 float32)


@dataclass(frozen=True)
class SegmentResult:
    """Masks for one prompt set (or N boxes) on the current plane.

    Attributes
    ----------
    masks : numpy.ndarray, ([N,] K, H, W) bool
        K = 3 candidates with ``multimask=True``, else 1.
    scores : numpy.ndarray, ([N,] K) float32
        The model's predicted IoU of each mask (pick the best with ``argmax``).
    logits : numpy.ndarray, ([N,] K, 256, 256) float32
        Low-resolution logits; pass one as ``mask_input`` to refine.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray


class SegAny:
    """Segment Anything on microscopy planes: one model, an embedding cache, a current plane.

    Parameters
    ----------
    model : str
        Registry name (``"vit_b"``, ``"vit_t"``, ``"vit_b_lm"``, ...) or, with
        ``checkpoint``, the name to show for it.
    checkpoint : str or Path, optional
        Local checkpoint file (works offline); its architecture is detected.
    device : str
        ``"auto"`` (CUDA, then Apple MPS, then CPU), or an explicit torch device.
    precision : str
        ``"auto"`` (bf16 where the device computes it natively), ``"fp32"`` or ``"bf16"``.
    cache_bytes : int
        Memory budget of the embedding cache (planes already embedded are never
        recomputed while they fit).
    """

    def __init__(
        self,
        model: str = "vit_b",
        checkpoint: str | Path | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        from .core.device import resolve_precision
        from .core.loading import load_model

        loaded = load_model(model, checkpoint=checkpoint, device=device)
        resolved = resolve_precision(precision, loaded.device)
        self._setup(loaded.model, loaded.device, resolved, str(loaded.name), cache_bytes)

    @classmethod
    def from_model(
        cls,
        sam: Sam,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        name: str = "custom",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> SegAny:
        """Session around an already built :class:`Sam` (e.g. a tiny test model).

        ``device`` and ``precision`` default to CPU and fp32; ``"auto"`` is resolved as in
        the constructor. ``name`` identifies the model in cache keys and embeddings.
        """
        from .core.device import resolve_device, resolve_precision

        resolved_device = resolve_device(device)
        self = cls.__new__(cls)
        self._setup(
            sam, resolved_device, resolve_precision(precision, resolved_device), name, cache_bytes
        )
        return self

    def _setup(self, sam: Sam, device, precision: str, name: str, cache_bytes: int) -> None:
        self.model_name = name
        self.precision = precision
        self.predictor = Predictor(sam, device, precision, model_key=f"{name}:{precision}")
        self.cache = EmbeddingCache(cache_bytes)
        self._embedding: Embedding | None = None
        logger.info("SegAny ready: model %s on %s (%s)", name, device, precision)

    @property
    def device(self) -> torch.device:
        """Device the model runs on."""
        return self.predictor.device

    @property
    def embedding(self) -> Embedding | None:
        """Embedding of the current plane (None before :meth:`set_image`)."""
        return self._embedding

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """(H, W) of the current plane (None before :meth:`set_image`)."""
        return None if self._embedding is None else self._embedding.original_hw

    def embedding_key(
        self, image: np.ndarray, contrast_limits=None, channels: Sequence[int] | None = None
    ) -> tuple:
        """Cache key of a plane: content hash, shape, dtype, conversion options, model.

        Raises
        ------
        ImageError
            If the plane or its options are invalid.
        """
        array = np.asarray(image)
        validate_plane(array, contrast_limits, channels)
        digest = xxhash.xxh3_128_hexdigest(memoryview(np.ascontiguousarray(array)).cast("B"))
        limits = None
        if contrast_limits is not None:
            limits = tuple(np.asarray(contrast_limits, dtype=np.float64).ravel().tolist())
        picked = None if channels is None else tuple(int(c) for c in np.atleast_1d(channels))
        return (digest, array.shape, array.dtype.str, limits, picked, self.predictor.model_key)

    def embed(
        self, image: np.ndarray, contrast_limits=None, channels: Sequence[int] | None = None
    ) -> Embedding:
        """Embedding of a plane from the cache, or computed and cached (thread-safe).

        Does not change the current plane; see :meth:`set_image` for the arguments.
        """
        key = self.embedding_key(image, contrast_limits, channels)
        embedding = self.cache.get(key)
        if embedding is None:
            rgb = to_model_rgb(image, contrast_limits=contrast_limits, channels=channels)
            embedding = self.cache.put(key, self.predictor.embed(rgb))
        return embedding

    def set_image(
        self, image: np.ndarray, contrast_limits=None, channels: Sequence[int] | None = None
    ) -> Embedding:
        """Make ``image`` the current plane, embedding it unless it is cached.

        Parameters
        ----------
        image : array-like, (H, W) or (H, W, C)
            One plane, channel axis last, any numeric or bool dtype (for a stack, pass
            one plane). Conversion rules: ``napari_segany.core.image``.
        contrast_limits : (low, high) or array (k, 2), optional
            Intensity range mapped to black..white, e.g. the napari layer's
            ``contrast_limits``; default: robust percentiles (uint8 unchanged).
        channels : sequence of 1 to 3 int, optional
            Channels to use as R, G, B (default: the first three).

        Returns
        -------
        Embedding
            The plane's embedding, now current.

        Raises
        ------
        ImageError
            On an invalid plane or option; the previous plane stays current.
        """
        self._embedding = self.embed(image, contrast_limits, channels)
        return self._embedding

    def set_embedding(self, embedding: Embedding) -> None:
        """Make a precomputed :class:`Embedding` (e.g. from :meth:`embed`) current."""
        self._embedding = embedding

    def segment(
        self,
        points_yx: np.ndarray | Sequence | None = None,
        labels: np.ndarray | Sequence | None = None,
        box_yxyx: np.ndarray | Sequence | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> SegmentResult:
        """Segment the current plane from prompts in (row, col) pixel coordinates.

        Parameters
        ----------
        points_yx : array (P, 2), optional
            Points as (y, x), inside the plane.
        labels : array (P,), optional
            1 = on the object, 0 = background; required with ``points_yx``.
        box_yxyx : array (4,) or (N, 4), optional
            Box(es) as (y0, x0, y1, x1); N boxes give N objects (leading N axis).
        mask_input : array (256, 256), (1, 256, 256) or (N, 1, 256, 256), optional
            ``logits`` of a previous result, to refine it.
        multimask : bool
            Three candidate masks (K = 3) instead of one (K = 1).

        Returns
        -------
        SegmentResult

        Raises
        ------
        NoImageError
            Before :meth:`set_image`.
        PromptError
            On an invalid prompt (nothing changes).
        """
        if self._embedding is None:
            raise NoImageError("No image set: call set_image(plane) before segment(...).")
        prediction = self.predictor.predict(
            self._embedding, points_yx, labels, box_yxyx, mask_input, multimask
        )
        return SegmentResult(prediction.masks, prediction.scores, prediction.logits)

    def __repr__(self) -> str:
        return (
            f"SegAny(model={self.model_name!r}, device={str(self.device)!r}, "
            f"precision={self.precision!r}, cached_embeddings={len(self.cache)})"
        )
