"""The persistent embedding store of a :class:`~napari_segany.api.SegAny` session.

:class:`StoreMethods` (mixed into ``SegAny``): ``embedding_store`` (``core.store``)
and the one path a plane's embedding takes when it is not in memory: read from the
store, else computed (and stored), then cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .core.embeddings import Embedding, EmbeddingCache
from .core.predictor import Predictor
from .core.store import EmbeddingStore, model_fingerprint

__all__ = ["StoreMethods"]


class StoreMethods:
    """The session's embedding store (mixed into ``SegAny``)."""

    predictor: Predictor
    cache: EmbeddingCache
    _store: EmbeddingStore | None = None

    @property
    def embedding_store(self) -> EmbeddingStore | None:
        """The persistent embedding store in use (``core.store``), or None; set a
        directory (created if missing) to use one, None to stop."""
        return self._store

    @embedding_store.setter
    def embedding_store(self, path: str | Path | None) -> None:
        if path is None:
            self._store = None
            return
        if self._store is not None and Path(path) == self._store.path:
            return
        fingerprint = model_fingerprint(self.predictor.model)
        self._store = EmbeddingStore(path, fingerprint)

    def _embed(self, key: tuple, image: Any, contrast_limits, channels, channel_axis) -> Embedding:
        """The plane's embedding from the store, or computed (and stored); cached."""
        store = self._store
        embedding = None if store is None else store.get(key, self.predictor.device)
        if embedding is None:
            rgb = self.predictor.rgb(image, contrast_limits, channels, channel_axis)
            embedding = self.predictor.embed(rgb)
            if store is not None:
                store.put(key, embedding)
        return self.cache.put(key, embedding)
