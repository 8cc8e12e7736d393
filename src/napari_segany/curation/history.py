"""An object-level undo/redo history of a label image, stored as changed pixels.

Each step (a commit, a refinement, a delete, a merge, a split, ...) keeps, per plane it
touched, the flat indices of the pixels it changed with their values before and after
(:class:`PlaneChange`): memory grows with what changed, never with the volume. The
oldest steps are dropped past ``max_bytes``.

Undo writes the "before" values back, redo the "after" values -- but only on pixels
that still hold what the step left there: a pixel changed since by other means (a
brush, another tool) keeps its current value, and the step says how many were spared.
The history holds no reference to who owns the array: the widget keeps one per Labels
layer object, so renaming the layer changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LabelsHistory", "PlaneChange", "Step"]

DEFAULT_MAX_BYTES = 256 << 20


@dataclass(frozen=True)
class PlaneChange:
    """The pixels one step changed on one plane.

    Attributes
    ----------
    index : tuple of int
        The plane's leading indices (``()`` for a 2D image).
    flat : numpy.ndarray, (P,) int64
        Indices into the raveled (H, W) plane.
    before, after : numpy.ndarray, (P,)
        Values before and after the step (the labels' dtype).
    """

    index: tuple[int, ...]
    flat: np.ndarray
    before: np.ndarray
    after: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.flat.nbytes + self.before.nbytes + self.after.nbytes)


@dataclass
class Step:
    """One entry of the history: what was done (``action``, ``details``) and its changes."""

    action: str
    details: dict[str, Any]
    changes: list[PlaneChange] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(change.nbytes for change in self.changes)

    @property
    def pixels(self) -> int:
        return sum(len(change.flat) for change in self.changes)

    def describe(self) -> str:
        ids = self.details.get("ids") or self.details.get("id")
        words = f" {ids}" if ids not in (None, [], ()) else ""
        planes = sorted({change.index for change in self.changes})
        where = "" if planes in ([()], []) else f" on {len(planes)} plane(s)"
        return f"{self.action}{words}{where} ({self.pixels} pixels)"


def plane_change(
    index: tuple[int, ...], before: np.ndarray, after: np.ndarray
) -> PlaneChange | None:
    """The change from ``before`` to ``after`` (two (H, W) planes), None when equal."""
    flat = np.flatnonzero(np.asarray(before) != np.asarray(after))
    if flat.size == 0:
        return None
    return PlaneChange(
        tuple(int(i) for i in index), flat, before.ravel()[flat], after.ravel()[flat]
    )


Writer = Callable[[tuple[int, ...], np.ndarray, np.ndarray], None]
"""``write(plane index, flat indices (P,), values (P,))``: how pixels reach the labels."""


def direct_writer(labels: np.ndarray) -> Writer:
    """A :data:`Writer` assigning into the numpy array ``labels``."""

    def write(index: tuple[int, ...], flat: np.ndarray, values: np.ndarray) -> None:
        plane = labels[index] if index else labels
        plane[np.unravel_index(flat, plane.shape)] = values

    return write


def _apply(labels: np.ndarray, change: PlaneChange, expected, wanted, write: Writer) -> int:
    """Write ``wanted`` where the plane still holds ``expected``; return pixels spared."""
    plane = labels[change.index] if change.index else labels
    holds = plane.reshape(-1)[change.flat] == expected
    if holds.any():
        write(change.index, change.flat[holds], wanted[holds])
    return int(holds.size - holds.sum())


class LabelsHistory:
    """Undo and redo of the steps made on one label array.

    Parameters
    ----------
    max_bytes : int
        Memory kept for undo and redo together; the oldest undo steps are dropped
        beyond it (the step just made is always kept).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._done: list[Step] = []
        self._undone: list[Step] = []
        self.dropped = 0

    @property
    def nbytes(self) -> int:
        return sum(step.nbytes for step in (*self._done, *self._undone))

    @property
    def steps(self) -> list[Step]:
        """The steps that can be undone, oldest first."""
        return list(self._done)

    @property
    def undone(self) -> list[Step]:
        """The steps that can be redone, next first."""
        return list(reversed(self._undone))

    def can_undo(self) -> bool:
        return bool(self._done)

    def can_redo(self) -> bool:
        return bool(self._undone)

    def push(self, step: Step) -> Step | None:
        """Add ``step`` (after its pixels were written); a step changing nothing is
        not kept (None returned). Clears the redo steps."""
        if not step.changes:
            return None
        self._done.append(step)
        self._undone.clear()
        while self.nbytes > self.max_bytes and len(self._done) > 1:
            self._done.pop(0)
            self.dropped += 1
        return step

    def record(
        self,
        labels: np.ndarray,
        action: str,
        details: dict[str, Any],
        planes: Iterable[tuple[tuple[int, ...], np.ndarray]],
    ) -> Step | None:
        """Push the step that turned each given ``(index, before)`` plane into what
        ``labels`` holds now (``before`` copies taken before writing)."""
        changes = []
        for index, before in planes:
            now = labels[index] if index else labels
            change = plane_change(index, before, now)
            if change is not None:
                changes.append(change)
        return self.push(Step(action, dict(details), changes))

    def undo(self, labels: np.ndarray, write: Writer | None = None) -> tuple[Step, int] | None:
        """Take back the latest step on ``labels`` (through ``write``, default: assign);
        (step, pixels spared) or None."""
        if not self._done:
            return None
        write = write or direct_writer(labels)
        step = self._done.pop()
        spared = sum(_apply(labels, c, c.after, c.before, write) for c in reversed(step.changes))
        self._undone.append(step)
        return step, spared

    def redo(self, labels: np.ndarray, write: Writer | None = None) -> tuple[Step, int] | None:
        """Make the latest undone step again; (step, pixels spared) or None."""
        if not self._undone:
            return None
        write = write or direct_writer(labels)
        step = self._undone.pop()
        spared = sum(_apply(labels, c, c.before, c.after, write) for c in step.changes)
        self._done.append(step)
        return step, spared
