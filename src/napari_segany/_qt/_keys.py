"""Keyboard shortcuts of the Segment Anything widget.

Every key is a Shift combination that napari 0.9 leaves unbound (checked against
``napari.utils.shortcuts.default_shortcuts`` and the layer key bindings by
``tests/gui/test_keys.py``), bound on the viewer so it works whichever layer is
selected. Ctrl-Z is bound on the widget's own layers (prompts, boxes, preview): there
it undoes the last step in the target Labels layer (as Shift-U); on a Labels layer it
stays napari's undo of that layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app_model.types import KeyCode, KeyMod

# (key, widget method name, description) -- the order is the order of the tooltip
SHORTCUTS: tuple[tuple[str, str, str], ...] = (
    ("Shift-S", "commit", "commit the preview into the labels layer"),
    ("Shift-M", "next_candidate", "show the next of SAM's 3 candidate masks"),
    ("Shift-N", "toggle_polarity", "toggle: next points negative / positive"),
    ("Shift-X", "clear_prompts", "clear the prompts of the shown slice"),
    ("Shift-E", "segment_everything", "everything mode on the shown slice"),
    ("Shift-U", "undo", "undo the last step in the labels layer"),
    ("Shift-R", "redo", "redo the step undone last"),
    ("Shift-D", "delete_objects", "delete the objects under the points (shown slice)"),
)
MOUSE_HELP = (
    "click (Points layer, add mode): positive point",
    "Shift-click: negative point",
    "draw rectangles in the boxes layer: one object per box",
)


def tooltip() -> str:
    """Plain-text help listing the mouse actions and every shortcut."""
    lines = ["Segment Anything", *MOUSE_HELP]
    lines += [f"{key}: {text}" for key, _, text in SHORTCUTS]
    lines.append("Ctrl-Z with a prompt layer selected: undo, as Shift-U")
    return "\n".join(lines)


def bind_undo(layer: Any, widget: Any) -> None:
    """Ctrl-Z (Cmd-Z on macOS) on ``layer`` (a prompt or preview layer of the widget)
    takes back the last step in the target Labels layer, as the *Undo* button does."""

    def undo(_layer: Any) -> None:
        widget.undo_commit()

    undo.__doc__ = "Segment Anything: undo the last step in the labels layer"
    layer.bind_key(KeyMod.CtrlCmd | KeyCode.KeyZ, undo, overwrite=True)


def bind(viewer: Any, widget: Any) -> list[str]:
    """Bind every shortcut on ``viewer`` to the method of ``widget``; return the keys."""
    for key, method, _ in SHORTCUTS:
        viewer.bind_key(key, _caller(widget, method), overwrite=True)
    return [key for key, _, _ in SHORTCUTS]


def unbind(viewer: Any) -> None:
    """Remove the widget's shortcuts from ``viewer``."""
    for key, _, _ in SHORTCUTS:
        viewer.bind_key(key, None, overwrite=True)


def _caller(widget: Any, method: str) -> Callable[[Any], None]:
    def call(_viewer: Any) -> None:
        getattr(widget, method)()

    call.__doc__ = f"Segment Anything: {method.replace('_', ' ')}"
    return call
