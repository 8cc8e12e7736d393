"""What a curation follows besides its own edits: changes made by other means, and
the session, labels array, image and reading it goes on with (each a provenance step).
Mixed into :class:`~.session.Curation`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import InputError
from . import edits
from .history import PlaneChange, Step, plane_change


class TrackingMethods:
    """:class:`~.session.Curation`'s records of what it did not edit itself."""

    def record_pixels(
        self, action: str, befores: Sequence[tuple[tuple[int, ...], np.ndarray]]
    ) -> Step | None:
        """Record a change made to :attr:`labels` by other means (a brush, a
        propagation, another tool): each ``(plane index, copy before)`` against what the
        plane holds now. The changed pixels go into the history and, run-length
        encoded, into the provenance (a replay writes them as they were)."""
        return self.record_changes(action, [
            change for index, before in befores
            if (change := plane_change(index, before, self._view(index))) is not None
        ])  # fmt: skip

    def record_changes(self, action: str, changes: Sequence[PlaneChange]) -> Step | None:
        """Record changes already written to :attr:`labels` (see :meth:`record_pixels`)."""
        step = self.history.push(Step(action, {}, list(changes)))
        if step is not None:
            self._top = max([self._top, *(int(c.after.max()) for c in step.changes)])
            self.steps.append({"op": "pixels", "action": action, **edits.encode_changes(changes)})
        return step

    def apply_pixels(self, action: str, record: dict) -> Step | None:
        """Write the changes of a ``"pixels"`` provenance entry and record them (replay)."""
        changes = edits.decode_changes(record, self.labels)
        write = self._writer()
        for change in changes:
            write(change.index, change.flat, change.after)
        return self.record_changes(action, changes)

    def use_session(self, segany: Any) -> None:
        """Go on with ``segany`` (another model, or the same with other settings): a
        ``"model"`` step when its model or settings differ from the last recorded, so a
        replay switches where the curation did. Every edit checks this first."""
        from .provenance import model_identity

        self.segany = segany
        now = model_identity(segany)
        if now != self._model:
            self._model = now
            self.steps.append({"op": "model", "model": now})

    def use_labels(self, labels: np.ndarray) -> None:
        """Go on with ``labels`` (the same pixels in a new array, e.g. a wider dtype:
        a ``"dtype"`` step when the dtype changed); the history stays."""
        if labels is self.labels:
            return
        if labels.shape != self.labels.shape:
            raise InputError(f"labels of shape {labels.shape} cannot replace {self.labels.shape}")
        if labels.dtype != self.labels.dtype:
            self.steps.append({"op": "dtype", "dtype": labels.dtype.name})
        self.labels = labels

    def use_image(self, image: Any) -> None:
        """Go on with another image of the same plane shape (an ``"image"`` step: such
        a record cannot be replayed on one image)."""
        if image is self.image:
            return
        self.image = image
        self.steps.append({"op": "image", "shape": [int(n) for n in image.shape]})

    def use_reading(self, contrast_limits: tuple[float, float] | None) -> None:
        """Read planes with other contrast limits from now on (a ``"reading"`` step)."""
        limits = None if contrast_limits is None else tuple(float(c) for c in contrast_limits)
        if limits != self.reading["contrast_limits"]:
            self.reading["contrast_limits"] = limits
            self.steps.append({"op": "reading", "contrast_limits": limits})
