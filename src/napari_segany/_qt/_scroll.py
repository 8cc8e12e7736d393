"""The widget's scrolling controls: as wide as they need, never taller than the screen."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QStyle, QVBoxLayout, QWidget


class ControlsScrollArea(QScrollArea):
    """Scrolls the controls vertically only, and is always wide enough for them.

    Its minimum width follows the controls' (e.g. when *Everything mode* opens) plus
    the vertical scroll bar, so nothing is cut on the right; the dock never grows past
    the screen because the height scrolls.
    """

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setWidget(QWidget())

    def minimumSizeHint(self) -> QSize:
        """The controls' minimum width plus the scroll bar and frame."""
        hint = super().minimumSizeHint()
        bar = self.verticalScrollBar()
        chrome = bar.style().pixelMetric(QStyle.PM_ScrollBarExtent, None, bar) + 2
        if self.isVisible() and self.viewport().width() > 0:
            chrome = max(chrome, self.width() - self.viewport().width())
        return QSize(self.widget().minimumSizeHint().width() + chrome, hint.height())

    def sizeHint(self) -> QSize:
        """As narrow as the controls allow, so opening a group never widens the dock."""
        return QSize(self.minimumSizeHint().width(), super().sizeHint().height())

    def eventFilter(self, watched: Any, event: Any) -> bool:
        """Ask the dock for a new width whenever the controls' layout changes."""
        if watched is self.widget() and event.type() == QEvent.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)


def scroll_area(widget: QWidget) -> ControlsScrollArea:
    """A :class:`ControlsScrollArea` filling ``widget``; the controls go into its
    ``widget()``."""
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    scroll = ControlsScrollArea(widget)
    layout.addWidget(scroll)
    return scroll
