"""Image embeddings, a thread-safe LRU cache bounded by bytes, and a plane's view store."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import xxhash

if TYPE_CHECKING:  # the annotation only: importing the SAM 2 model is not needed here
    from .model.sam2 import Sam2Features

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedding:
    """The encoder output for one plane, plus what is needed to map prompts onto it.

    Attributes
    ----------
    features : torch.Tensor, (1, 256, h, w) float32, or Sam2Features
        Image embedding on the model's device (h = w = 64 for SAM); for SAM 2.1 the
        embedding and its high-resolution skips (``core.model.sam2.Sam2Features``).
    original_hw : (int, int)
        ``(H, W)`` of the plane the user gave.
    input_hw : (int, int)
        ``(h', w')`` of the plane resized to the model frame (long side ``image_size``),
        before zero padding.
    model_key : str
        Identifies the model (and precision) that computed it.
    """

    features: torch.Tensor | Sam2Features
    original_hw: tuple[int, int]
    input_hw: tuple[int, int]
    model_key: str = ""

    @property
    def nbytes(self) -> int:
        """Memory held by :attr:`features`, in bytes."""
        if isinstance(self.features, torch.Tensor):
            return self.features.element_size() * self.features.numel()
        return self.features.nbytes

    @property
    def grid_hw(self) -> tuple[int, int]:
        """(h, w) of the embedding grid (the low-resolution logits are 4x that)."""
        return tuple(int(side) for side in self.features.shape[-2:])


class EmbeddingCache:
    """Least-recently-used cache of :class:`Embedding` objects with a byte budget.

    Safe to use from several threads (the widget embeds in a worker thread).
    An embedding larger than the whole budget is not stored.

    Parameters
    ----------
    max_bytes : int
        Budget for the sum of :attr:`Embedding.nbytes` of the stored entries;
        0 disables caching.
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, Embedding] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes currently held by the cached embeddings."""
        return self._nbytes

    def get(self, key: Hashable) -> Embedding | None:
        """Return the embedding stored under ``key`` (marking it recent), else None."""
        with self._lock:
            embedding = self._entries.get(key)
            if embedding is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return embedding

    def put(self, key: Hashable, embedding: Embedding) -> Embedding:
        """Store ``embedding`` under ``key``, evicting the least recent entries as needed.

        Returns
        -------
        Embedding
            ``embedding`` itself (also when it is too big to be cached).
        """
        size = embedding.nbytes
        with self._lock:
            self._discard(key)
            if size > self.max_bytes:
                logger.debug("embedding of %d bytes exceeds the cache budget", size)
                return embedding
            while self._entries and self._nbytes + size > self.max_bytes:
                self._discard(next(iter(self._entries)))
            self._entries[key] = embedding
            self._nbytes += size
        return embedding

    def _discard(self, key: Hashable) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._nbytes -= old.nbytes

    def clear(self) -> None:
        """Drop every entry (the hit/miss counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries


def content_digest(array: np.ndarray) -> str:
    """xxh3-128 (hex) of an array's bytes in C order: the content part of every key and
    identity made from pixels (cache keys, curation records)."""
    return xxhash.xxh3_128_hexdigest(memoryview(np.ascontiguousarray(array)).cast("B"))


def plane_key(
    image: np.ndarray,
    contrast_limits=None,
    channels=None,
    model_key: str = "",
    channel_axis: int | None = None,
) -> tuple:
    """Cache key of a plane: content hash, shape, dtype, conversion options, model.

    Raises
    ------
    ImageError
        If the plane or its options are invalid.
    """
    from .image import validate_plane

    array = np.asarray(image)
    validate_plane(array, contrast_limits, channels, channel_axis)
    digest = content_digest(array)
    limits = None
    if contrast_limits is not None:
        limits = tuple(np.asarray(contrast_limits, dtype=np.float64).ravel().tolist())
    picked = None if channels is None else tuple(int(c) for c in np.atleast_1d(channels))
    axis = None if channel_axis is None else int(channel_axis) % array.ndim
    return (digest, array.shape, array.dtype.str, limits, picked, model_key, axis)


class ViewEmbeddings:
    """Embeddings of views of one plane (its tiles, the plane turned, ...), by content.

    Each view is embedded once and kept while this object lives (the session keeps one
    per prepared plane). :meth:`get` only looks up, for code that must not embed.

    Parameters
    ----------
    embed : callable
        ``rgb (h, w, 3) uint8 -> Embedding``, e.g. ``Predictor.embed``; called as
        ``embed(rgb, enlarge)`` for a view that may be enlarged more than a plane
        (``Predictor.embed``'s ``enlarge``).
    """

    def __init__(self, embed: Callable[..., Embedding]) -> None:
        self._embed = embed
        self._known: dict[tuple, Embedding] = {}

    @staticmethod
    def key(rgb_uint8: np.ndarray, enlarge: float = 1.0) -> tuple:
        """Content key of a view: shape, xxh3-128 of its bytes and its enlargement."""
        return np.shape(rgb_uint8), content_digest(rgb_uint8), enlarge

    def embed(self, rgb_uint8: np.ndarray, enlarge: float = 1.0) -> Embedding:
        """The view's embedding, computed on first use (``enlarge``: as
        ``Predictor.embed``'s, e.g. a zoomed tile's zoom)."""
        key = self.key(rgb_uint8, enlarge)
        if key not in self._known:
            view = np.ascontiguousarray(rgb_uint8)
            self._known[key] = self._embed(view) if enlarge == 1 else self._embed(view, enlarge)
        return self._known[key]

    def get(self, rgb_uint8: np.ndarray, enlarge: float = 1.0) -> Embedding | None:
        """The view's embedding if it was embedded, else None (never embeds)."""
        return self._known.get(self.key(rgb_uint8, enlarge))

    @property
    def nbytes(self) -> int:
        """Bytes held by the kept embeddings."""
        return sum(e.nbytes for e in self._known.values())

    def __len__(self) -> int:
        return len(self._known)
