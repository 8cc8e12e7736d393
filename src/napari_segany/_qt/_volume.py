"""The widget's *Through the stack* group: propagate the objects of the shown plane.

The objects are the labels on the shown plane of the layer commits go into; they are
followed along the chosen axis (z, or t) in the background (progress, Cancel), and
written into that axis' other planes where they are background (or over existing
labels with *overwrite*), as one step of *Undo commit*. The logic is in
:mod:`napari_segany.app.volume`.
"""

from __future__ import annotations

from typing import Any

from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QObject
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_segany import _layers
from napari_segany.app import volume as app
from napari_segany.core.errors import SegAnyError

from ._workers import notify_error

TO_OPEN = " (click to open)"


class VolumePanel(QObject):
    """The group and its behaviour (a child of the widget)."""

    def __init__(self, widget: Any) -> None:
        super().__init__(widget)
        self.widget, self.viewer = widget, widget.viewer
        self.box = QGroupBox("Through the stack" + TO_OPEN)
        self.box.setCheckable(True)
        self.box.setChecked(False)
        inner = QWidget()
        form = QFormLayout(inner)
        form.setContentsMargins(0, 0, 0, 0)
        self.axis_combo = QComboBox()
        self.axis_combo.setToolTip("the axis objects are followed along (z, or t)")
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(list(app.DIRECTIONS))
        self.direction_combo.setToolTip("forward: towards higher slice numbers")
        self.range_spin = QSpinBox()
        self.range_spin.setRange(0, 100000)
        self.range_spin.setSpecialValueText("whole axis")  # shown for 0
        self.range_spin.setSuffix(" slices each way")
        self.range_spin.setToolTip("how far from this slice objects are followed (0: all)")
        self.overwrite_box = QCheckBox("overwrite existing labels")
        self.button = QPushButton("Propagate objects on this slice")
        self.button.setToolTip(
            "follow every object committed on the shown slice through the stack "
            "(each slice prompted from the last; see docs/usage.md)"
        )
        form.addRow("axis", self.axis_combo)
        form.addRow("direction", self.direction_combo)
        form.addRow("range", self.range_spin)
        form.addRow(self.overwrite_box)
        form.addRow(self.button)
        inner.setVisible(False)
        self.box.setLayout(QFormLayout())
        self.box.layout().addRow(inner)
        self.box.toggled.connect(inner.setVisible)
        self.box.toggled.connect(self._fill_axes)
        self.box.toggled.connect(
            lambda open_: self.box.setTitle("Through the stack" + ("" if open_ else TO_OPEN))
        )
        self.button.clicked.connect(self.propagate)

    def _fill_axes(self, *_: Any) -> None:
        """Offer the image's plane axes, keeping the one chosen when it is still there."""
        image = self.widget.image_layer(quiet=True)
        chosen = self.axis_combo.currentData()
        self.axis_combo.clear()
        for axis, label in [] if image is None else app.plane_axes(image):
            default_label = label.lstrip("-").isdigit()  # napari's own are "-3", ...
            self.axis_combo.addItem(f"axis {axis}" if default_label else label, axis)
        self.axis_combo.setCurrentIndex(max(self.axis_combo.findData(chosen), 0))

    def propagate(self) -> None:
        """Propagate the shown plane's objects in the background."""
        image, session = self.widget.image_layer(), self.widget.segany
        if image is None:
            return
        if session is None or not hasattr(session, "open_volume"):
            show_info("Load a model first (Load model).")
            return
        self._fill_axes()
        if self.axis_combo.count() == 0:
            show_info(f"'{image.name}' is a single plane: nothing to propagate through.")
            return
        try:
            target = self.widget.target_labels(image)
            index = _layers.plane_index(image, self.viewer.dims.point)
            objects = app.objects_on_plane(target, index)
        except SegAnyError as error:
            notify_error(error, "Nothing propagated")
            return
        axis = int(self.axis_combo.currentData())
        self.widget.start(
            app.propagate_run,
            session.fork(),  # its volume sets planes of its own, not the prompts' plane
            image,
            index,
            axis,
            objects,
            self.direction_combo.currentText(),
            self.range_spin.value() or None,
            message=f"propagating {len(objects)} objects ...",
            on_done=lambda run: self._write(image, target, run),
            on_progress=self.widget.progress_display(),
            determinate=True,
        )

    def _write(self, image: Any, target: Any, run: app.Propagation) -> None:
        self.widget.controls.set_busy(False, "propagated", determinate=True)
        if image not in self.viewer.layers or target not in self.viewer.layers:
            show_warning("The image or labels layer was deleted meanwhile; nothing written.")
            return
        try:
            with self.widget.curations.recording(target, "propagate", image, self.widget.segany):
                message = app.write(target, run, self.overwrite_box.isChecked())
        except SegAnyError as error:
            notify_error(error, "Nothing written")
            return
        self.widget.controls.status.setText(message + " (Undo takes it back)")
