"""What the app layer needs from a session, as typed protocols.

``napari_segany.api.SegAny`` implements both; test doubles implement them explicitly
(subclass the protocol), so a session missing a method fails loudly rather than being
probed with ``getattr``.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import numpy as np

from napari_segany.core.everything.modes import EverythingModes
from napari_segany.core.progress import Progress
from napari_segany.core.results import SegmentResult


class ChannelReader(Protocol):
    """How a session's model reads a plane's channels (``SegAny.predictor``)."""

    def describe_channels(self, plane: np.ndarray | tuple[int, ...]) -> str:
        """One line saying how the plane (or a plane of that shape) becomes the model's
        R, G, B, e.g. ``"grey"`` or ``"channel 0 as grey (unused: channel 1, 2; ...)"``."""


@runtime_checkable
class PromptSession(Protocol):
    """A session that answers prompts on planes prepared in the background."""

    predictor: ChannelReader
    """The model on its device; the app reads only how it sees channels."""

    def prepare(
        self,
        image: np.ndarray,
        contrast_limits: Any = None,
        channels: Sequence[int] | None = None,
        *,
        run: bool = True,
        region_yxyx: Sequence[float] | None = None,
    ) -> Any:
        """Embed the plane and run the model's per-plane preparation; return the
        embedding (slow: the widget calls it in a worker). ``run=False``: run nothing,
        return the embedding only if the plane is ready, else None. ``region_yxyx``:
        where the prompts lie (a plane seen window by window prepares that window)."""

    def set_image(
        self,
        image: np.ndarray | None,
        contrast_limits: Any = None,
        channels: Sequence[int] | None = None,
        *,
        embedding: Any = None,
    ) -> Any:
        """Make a plane current (the app passes the prepared ``embedding``)."""

    def segment(
        self,
        points_yx: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box_yxyx: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> SegmentResult:
        """Masks of the current plane for the prompts (row, col pixels)."""

    def fork(self) -> Any:
        """A session sharing this one's model and caches, with a current plane of its
        own: the widget's background jobs compute with one, so they never change the
        plane the GUI thread's prompts are answered on."""

    def without_embedding(self) -> AbstractContextManager[None]:
        """A block whose prompts embed nothing on the calling thread: one that needs an
        embedding not made yet raises ``WindowNotPrepared``, and :meth:`prepare` of its
        region makes it (``SegAny``: the windows of a plane seen window by window)."""


class Candidates(Protocol):
    """Phase 1 of everything mode on one plane (``GridCandidates``)."""

    def select(self, filters: Any) -> Any:
        """Phase 2: ``.labels`` (H, W) and ``.objects`` (records with ``label``, ``plane``)."""


@runtime_checkable
class EverythingSession(Protocol):
    """A session with everything mode."""

    def fork(self) -> Any:
        """As :meth:`PromptSession.fork`."""

    def decode_everything(
        self,
        image: np.ndarray,
        contrast_limits: Any = None,
        channels: Sequence[int] | None = None,
        mode: str = "auto",
        **params: Any,
    ) -> Generator[Progress, None, Candidates]:
        """Phase 1 on one plane, as a generator of progress returning its candidates."""

    everything: EverythingModes
    """The session's modes, their parameters and defaults (``core.everything``)."""
