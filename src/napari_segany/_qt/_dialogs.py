"""Questions the widget asks the user (one function each, so tests can answer them)."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QMessageBox

from napari_segany.app.widening import widen_question
from napari_segany.core.errors import LabelsDtypeError


def ask_to_widen(parent: Any, error: LabelsDtypeError) -> bool:
    """Ask whether to widen the Labels layer of ``error`` to ``error.wider``; True: yes.

    The default button is *No* (nothing is written).
    """
    answer = QMessageBox.question(
        parent,
        "Labels layer too narrow",
        widen_question(error),
        QMessageBox.Yes | QMessageBox.No,
        QMessageBox.No,
    )
    return answer == QMessageBox.Yes


def consent_from(parent: Any) -> Any:
    """A ``consent`` callable for :mod:`napari_segany.app.widening` that asks the user
    with a dialog over ``parent`` (looked up at call time, so tests can replace it)."""

    def consent(error: LabelsDtypeError) -> bool:
        return ask_to_widen(parent, error)

    return consent


def ask_save_path(parent: Any, title: str, filters: str) -> str:
    """A file name to save to ('' when cancelled)."""
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getSaveFileName(parent, title, "", filters)
    return path
