"""The planes a session prepared: a :class:`~.plugins.PlaneContext` each, kept a while.

A plane's context holds its embedding, its model RGB, its view embeddings and what the
model's refiners prepared for it (``PromptRefiner.prepare``). The session keeps the
last :data:`PLANES_KEPT` contexts, fewer when their view embeddings pass
:data:`VIEW_BYTES` (the newest always stays), so a plane prepared in the background is
ready when the user clicks on it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .embeddings import Embedding, ViewEmbeddings
from .plugins import PlaneContext, PromptRefiner
from .predictor import Predictor

PLANES_KEPT = 8
VIEW_BYTES = 256 << 20  # the built-in model's views: up to 64 MiB per plane (zoom 4)


class PlaneStore:
    """Prepared planes by embedding (thread-safe LRU).

    Parameters
    ----------
    predictor : Predictor
        Embeds the planes' views.
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self._contexts: OrderedDict[int, PlaneContext] = OrderedDict()
        self._lock = threading.Lock()

    def context(self, embedding: Embedding, rgb: np.ndarray | None) -> PlaneContext:
        """The kept context of ``embedding``, else a new one (kept from now on).

        A kept context without pixels gets ``rgb`` when it is given.
        """
        with self._lock:
            known = self._contexts.get(id(embedding))
            if known is not None and known.embedding is embedding:
                self._contexts.move_to_end(id(embedding))
                if known.rgb is None and rgb is not None:
                    known.rgb = rgb
                    known.prepared.clear()  # prepared without pixels: again with them
                return known
            views = ViewEmbeddings(self.predictor.embed)
            context = PlaneContext(self.predictor, embedding, rgb, views)
            self._contexts[id(embedding)] = context
            self._evict()
            return context

    def with_pixels(
        self, embedding: Embedding, image: np.ndarray | None = None, *reading: Any
    ) -> PlaneContext:
        """:meth:`context` with the plane's pixels as the model sees them: converted from
        ``image`` (``reading``: contrast limits, channels, channel axis, as in
        ``Predictor.rgb``) only when given and the kept context has none yet."""
        known = self.find(embedding)
        rgb = None
        if image is not None and (known is None or known.rgb is None):
            rgb = self.predictor.rgb(image, *reading)
        return self.context(embedding, rgb)

    def find(self, embedding: Embedding) -> PlaneContext | None:
        """The kept context of ``embedding`` or None (the order is not changed)."""
        with self._lock:
            known = self._contexts.get(id(embedding))
            return known if known is not None and known.embedding is embedding else None

    def clear(self) -> None:
        """Forget every context (e.g. after the refiners changed)."""
        with self._lock:
            self._contexts.clear()

    def _evict(self) -> None:
        while len(self._contexts) > PLANES_KEPT or (
            len(self._contexts) > 1
            and sum(c.views.nbytes for c in self._contexts.values()) > VIEW_BYTES
        ):
            self._contexts.popitem(last=False)


def missing(context: PlaneContext, refiners: Sequence[PromptRefiner]) -> list[PromptRefiner]:
    """The refiners that have not prepared ``context`` yet."""
    return [r for r in refiners if r.name not in context.prepared]


def prepare(context: PlaneContext, refiners: Sequence[PromptRefiner]) -> PlaneContext:
    """Run every missing refiner's ``prepare`` on the plane (may embed views)."""
    for refiner in missing(context, refiners):
        context.prepared[refiner.name] = refiner.prepare(context)
    return context
