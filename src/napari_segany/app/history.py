"""The widget's own undo: take back its last write into a Labels layer, safely.

napari's Ctrl-Z acts on the *selected* Labels layer only. The widget records each of
its writes (a commit, an everything-mode write) and :meth:`WriteHistory.undo` takes
back the latest one with that layer's own undo -- but only while the write is still
the layer's latest change: if the user painted on the layer since, or already undid
the write, nothing is changed and the message says so (the user's labels are never
taken back by this undo).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(eq=False)
class _Write:
    """One recorded write: its layer, the layer's edit count after it, its changes."""

    layer: Any
    edits: int
    atoms: list


class WriteHistory:
    """The widget's writes into Labels layers, newest last (at most ``limit``)."""

    def __init__(self, limit: int = 50) -> None:
        self.limit = limit
        self._writes: list[_Write] = []
        self._edits: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._latest: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _watch(self, layer: Any) -> None:
        if layer in self._edits:
            return
        self._edits[layer] = 0
        owner = weakref.ref(self)

        def on_paint(event: Any) -> None:
            history = owner()
            if history is not None and layer in history._edits:
                history._edits[layer] += 1
                history._latest[layer] = list(event.value)

        layer.events.paint.connect(on_paint)

    @contextmanager
    def recording(self, layer: Any) -> Iterator[None]:
        """Record the write made inside the ``with`` block into ``layer`` (one undo
        step of the layer; nothing is recorded when it changed no pixel)."""
        self._watch(layer)
        before = self._edits[layer]
        yield
        if self._edits[layer] > before:
            write = _Write(layer, self._edits[layer], self._latest.get(layer, []))
            self._writes = [*self._writes, write][-self.limit :]

    def __len__(self) -> int:
        return len(self._writes)

    def undo(self, layers: Any) -> str:
        """Take back the latest recorded write; return what happened (a status line).

        Parameters
        ----------
        layers : napari LayerList
            The viewer's layers (a write into a deleted layer is dropped).
        """
        if not self._writes:
            return "nothing to undo: no commit since the widget opened"
        write = self._writes.pop()
        layer = write.layer
        if layer not in layers:
            return f"nothing undone: '{layer.name}' was deleted"
        if self._edits[layer] != write.edits or not _still_there(layer, write.atoms):
            self._writes = [w for w in self._writes if w.layer is not layer]
            return (
                f"nothing undone: '{layer.name}' changed since the last commit (painted "
                "or undone); select that layer and use its Ctrl-Z"
            )
        layer.undo()
        self._edits[layer] -= 1
        return f"undid the last commit into '{layer.name}'"


def _still_there(layer: Any, atoms: list) -> bool:
    """Whether the pixels of a write's history atoms still hold what it wrote."""
    for atom in atoms:
        if not isinstance(atom, tuple) or len(atom) != 3:
            return False  # not a write of ours (data_setitem records 3-tuples)
        indices, _, written = atom
        if not np.all(np.asarray(layer.data[indices]) == written):
            return False
    return True
