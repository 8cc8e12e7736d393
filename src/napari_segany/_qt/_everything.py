"""Everything mode in the dock widget: a view over :mod:`napari_segany.app.everything`.

*Segment this slice* (Shift-E) or *Segment whole stack* runs the session's
proposer (the *proposals* combo: the session's ``everything.names()``, the model's
default first) in the widget's background job (progress bar, Cancel) and writes the
objects into a Labels layer: by default a layer of its own, ``SegAny everything`` (one
per image, reused by later runs, whose planes it replaces); or a Labels layer the user
picks, where only background pixels are written unless *overwrite* is ticked. Every
write is one undo step. Results land on the planes they were computed for, whatever
the viewer shows meanwhile.

After a run, changing a threshold (predicted IoU, stability, box NMS, minimum region
area) or *link* re-applies the selection to the kept candidates after a short pause,
without the model, and rewrites the same planes -- unless the user edited them since
(then nothing is changed and a notification says so).
"""

from __future__ import annotations

import logging
from typing import Any

from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QObject, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_segany import _layers
from napari_segany.app import everything as app
from napari_segany.app.everything import EVERYTHING, Run
from napari_segany.app.sessions import EverythingSession
from napari_segany.core.errors import InputError, SegAnyError
from napari_segany.core.everything import PlaneSelection

from . import _dialogs
from ._controls import NEW_LAYER
from ._mode_controls import PARAMETERS, changed_signal, make_control, set_quietly, value_of
from ._workers import Job, notify_error

logger = logging.getLogger(__name__)
__all__ = ["EVERYTHING", "EverythingPanel", "Run"]
RESELECT_MS = 300


def _spin(low: float, high: float, value: float, tip: str, step: float = 0.01) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setDecimals(2)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _everything_session(session: Any) -> EverythingSession | None:
    """``session`` when it has everything mode, else None."""
    return session if isinstance(session, EverythingSession) else None


class EverythingPanel(QObject):
    """The *Everything mode* group of the widget and its behaviour (a child of the widget)."""

    def __init__(self, widget: Any) -> None:
        super().__init__(widget)
        self.widget = widget
        self.viewer = widget.viewer
        self.run: Run | None = None
        self.targets = app.Targets(self.viewer)
        self._fields: dict[str, tuple[frozenset, dict]] = {}  # mode -> app.mode_fields
        self._defaults: dict[str, dict] = {}  # mode -> its parameters' and thresholds' defaults
        self._reselect_job: Job | None = None
        self._reselect_again = False
        self.box = self._build()
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(RESELECT_MS)
        self.timer.timeout.connect(self.reselect)
        for spin in (self.iou_spin, self.stability_spin, self.nms_spin, self.min_area_spin):
            spin.valueChanged.connect(self._thresholds_changed)
        self.link_box.toggled.connect(self._thresholds_changed)
        self.proposals_combo.currentIndexChanged.connect(self._grid_changed)
        for control in self.param_controls.values():
            changed_signal(control).connect(self._grid_changed)
        self.proposals_combo.currentIndexChanged.connect(self._show_mode_controls)
        self.slice_button.clicked.connect(lambda: self.segment(stack=False))
        self.stack_button.clicked.connect(lambda: self.segment(stack=True))
        self._fill_modes(None)

    # --- controls ---------------------------------------------------------------------
    def _build(self) -> QGroupBox:
        box = QGroupBox("Everything mode (click to open)")
        box.setCheckable(True)
        box.setChecked(False)
        inner = QWidget()
        form = QFormLayout(inner)
        form.setContentsMargins(0, 0, 0, 0)
        self._make_controls()
        form.addRow("proposals", self.proposals_combo)
        controls = {
            **self.param_controls,
            "pred_iou_thresh": self.iou_spin,
            "stability_score_thresh": self.stability_spin,
            "box_nms_thresh": self.nms_spin,
            "min_mask_region_area": self.min_area_spin,
        }  # parameter -> (its row's label, its control); the mode decides which show
        labels = {name: spec[0] for name, spec in PARAMETERS.items()}
        self.rows = {n: (QLabel(labels.get(n, n)), c) for n, c in controls.items()}
        # the mode's rows only: a hidden row of a QFormLayout keeps its spacing (Qt 5)
        rows = QWidget()
        self.params_form = QFormLayout(rows)
        self.params_form.setContentsMargins(0, 0, 0, 0)
        for label, item in self.rows.values():
            label.setParent(rows)
            item.setParent(rows)
        form.addRow(rows)
        form.addRow("labels", self.target_combo)
        for item in (self.link_box, self.overwrite_box, self.slice_button, self.stack_button):
            form.addRow(item)
        form.addRow(self.summary)
        column = QVBoxLayout(box)
        column.addWidget(inner)
        inner.setVisible(False)
        box.toggled.connect(inner.setVisible)
        box.toggled.connect(
            lambda open_: box.setTitle("Everything mode" + ("" if open_ else " (click to open)"))
        )
        return box

    def _make_controls(self) -> None:
        self.proposals_combo = QComboBox()
        self.proposals_combo.setToolTip("where the objects come from (the model's default first)")
        # the proposers' own parameters (those with a control), then the thresholds
        self.param_controls = {name: make_control(name) for name in PARAMETERS}
        self.zoom_combo = self.param_controls["head_zoom"]
        self.points_spin = self.param_controls["points_per_side"]
        self.points_spin.setValue(32)
        self.m2m_box = self.param_controls["use_m2m"]
        self.iou_spin = _spin(0, 1, 0.88, "keep objects scoring above this ('off': all)")
        self.stability_spin = _spin(0, 1, 0.95, "keep masks at least this stable ('off': all)")
        self.nms_spin = _spin(0, 1, 0.7, "drop a mask whose box overlaps a better one this much")
        self.min_area_spin = QSpinBox()
        self.min_area_spin.setRange(0, 1_000_000)
        self.min_area_spin.setSingleStep(10)
        self.min_area_spin.setToolTip("remove holes and islands smaller than this (pixels)")
        for spin in (self.iou_spin, self.stability_spin, self.min_area_spin):
            spin.setSpecialValueText("off")  # 0 switches the rule off: say so
        self.link_box = QCheckBox("link objects across slices")
        self.link_box.setChecked(True)
        self.link_box.setToolTip("whole stack: an object keeps one id along the last axis")
        self.target_combo = QComboBox()
        self.target_combo.addItem(NEW_LAYER)
        self.target_combo.setToolTip(f"'{NEW_LAYER}': the layer '{EVERYTHING}'")
        self.overwrite_box = QCheckBox("overwrite existing labels")
        self.slice_button = QPushButton("Segment this slice (Shift-E)")
        self.stack_button = QPushButton("Segment whole stack")
        self.slice_button.setToolTip("everything mode on the slice on screen")
        self.stack_button.setToolTip("everything mode on every slice (ids unique in the stack)")
        self.summary = QLabel("thresholds re-apply at once after a run")
        self.summary.setWordWrap(True)

    @property
    def buttons(self) -> list[QPushButton]:
        """Buttons that start work (disabled while the widget is busy)."""
        return [self.slice_button, self.stack_button]

    @property
    def mode(self) -> str:
        """The proposer chosen in the *proposals* combo."""
        return self.proposals_combo.currentData() or app.GRID

    def shown(self) -> list[str]:
        """The parameters whose rows the chosen mode shows (its own, its thresholds)."""
        own, filters = self._fields.get(self.mode, (frozenset(), {}))
        return [name for name in self.rows if name in own or name in filters]

    def _value(self, name: str) -> Any:
        return value_of(self.rows[name][1])

    def grid_params(self) -> dict:
        """The expensive phase's parameters shown for the mode (the session's defaults
        for the others, e.g. the built-in model's clicked-part rule)."""
        own = self._fields.get(self.mode, (frozenset(), {}))[0]
        return {name: self._value(name) for name in self.shown() if name in own}

    def filter_params(self) -> dict:
        """Thresholds shown for the mode (the cheap phase; hidden ones: the defaults)."""
        return {name: self._value(name) for name in self.shown() if name in app.FILTER_NAMES}

    def use_model_defaults(self, session: Any) -> None:
        """Offer ``session``'s modes and show its defaults (SAM's where it sets none).

        Called when a model is loaded; a finished run is not re-selected by it.
        """
        self._fill_modes(_everything_session(session))  # and the default mode's values

    def _fill_modes(self, session: EverythingSession | None) -> None:
        """Offer the session's modes (the model's default first, chosen)."""
        modes = app.mode_choices(session)
        self._fields = {mode: app.mode_fields(session, mode) for mode in modes}
        self._defaults = {mode: app.mode_values(session, mode) for mode in modes}
        combo = self.proposals_combo
        combo.blockSignals(True)
        combo.clear()
        for name, description in modes.items():  # the first is what "auto" runs
            combo.addItem(f"{name} (auto)" if combo.count() == 0 else name, name)
            combo.setItemData(combo.count() - 1, description, Qt.ToolTipRole)
        combo.setCurrentIndex(0)
        combo.blockSignals(False)
        self._show_mode_controls()

    def _show_mode_controls(self, *_: Any) -> None:
        """Show exactly the rows the chosen mode uses, with its defaults, labelled in its
        terms (e.g. the built-in objects' "min foreground prob"); the others keep theirs."""
        shown, filters = self.shown(), self._fields.get(self.mode, (frozenset(), {}))[1]
        for name, value in self._defaults.get(self.mode, {}).items():  # the mode's own
            if name in self.rows:
                set_quietly(self.rows[name][1], value)
        while self.params_form.rowCount():
            self.params_form.takeRow(0)  # the widgets stay, hidden below unless shown
        for name, (label, item) in self.rows.items():
            label.setVisible(name in shown)
            item.setVisible(name in shown)
            if name in filters:
                label.setText(filters[name])
            if name in shown:
                self.params_form.addRow(label, item)

    def refresh_layers(self, labels: list[str]) -> None:
        """Offer ``labels`` (layer names) as targets."""
        current = self.target_combo.currentText()
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        self.target_combo.addItems([NEW_LAYER, *labels])
        if current in labels:
            self.target_combo.setCurrentText(current)
        self.target_combo.blockSignals(False)

    # --- runs ---------------------------------------------------------------------------
    def segment(self, stack: bool = False) -> None:
        """Segment everything on the shown plane, or on every plane, in the background."""
        segany, image = self.widget.segany, self.widget.image_layer()
        if image is None:
            return
        if segany is None:
            show_info("Load a model first (Load model).")
            return
        session = _everything_session(segany)
        if session is None:
            notify_error(InputError(f"{segany!r} has no everything mode; load a SAM model."))
            return
        try:
            filters = app.filters_for(session, self.filter_params(), self.mode)
        except SegAnyError as error:
            notify_error(error, "Everything mode did not start")
            return
        shown = _layers.plane_index(image, self.viewer.dims.point)
        indices = app.run_indices(image, shown, stack)
        where = app.run_words(image, indices, stack)
        self.timer.stop()
        self.widget.start(
            app.decode_run,
            session.fork(),  # (a stack linked by propagation sets its planes as current)
            image,
            indices,
            _layers.contrast_of(image),
            self.mode,
            self.grid_params(),
            filters,
            stack and self.link_box.isChecked(),
            message=f"everything mode on {where} ...",
            on_done=lambda out: self._decoded(Run(image, indices, out.candidates, stack), out),
            on_progress=self.widget.progress_display(),
            determinate=True,
            pass_cancel_event=True,
        )

    def _decoded(self, run: Run, selection: PlaneSelection) -> None:
        self.widget.controls.set_busy(False, "everything mode done", determinate=True)
        if run.image not in self.viewer.layers:
            show_warning(
                f"Image layer '{run.image.name}' was deleted during everything mode; "
                "nothing was written."
            )
            return
        name = self.target_combo.currentText()
        try:
            target, own = self.targets.choose(run.image, None if name == NEW_LAYER else name)
        except SegAnyError as error:
            notify_error(error, "Everything mode wrote nothing")
            return
        run.aim(target, own, self.overwrite_box.isChecked())
        self.run = run
        self._write(run, selection)

    def _write(self, run: Run, selection: PlaneSelection) -> None:
        if run.target not in self.viewer.layers:
            show_warning(
                f"Labels layer '{run.target.name}' was deleted; run everything mode again."
            )
            self.run = None
            return
        edited = app.edited_planes(run)
        if edited:
            show_warning(app.edited_message(run, edited))
            return
        try:
            record = self.widget.curations.recording(
                run.target, "everything", run.image, self.widget.segany
            )
            with record:
                text = app.write(run, selection, _dialogs.consent_from(self.widget))
        except SegAnyError as error:
            notify_error(error, "Everything mode wrote nothing")
            return
        for note in selection.warnings[:3]:
            show_warning(note)
        self.summary.setText(f"{text}; changing a threshold re-applies it")
        self.widget.controls.status.setText(text)

    # --- live thresholds ------------------------------------------------------------------
    def _thresholds_changed(self, *_: Any) -> None:
        if self.run is not None:
            self.timer.start()

    def _grid_changed(self, *_: Any) -> None:
        if self.run is not None:
            self.summary.setText("proposals changed: run everything mode again")

    def reselect(self) -> None:
        """Re-apply the thresholds to the last run's candidates (no model) and rewrite."""
        run, session = self.run, _everything_session(self.widget.segany)
        if run is None or session is None:
            return
        if self._reselect_job is not None and not self._reselect_job.finished:
            self._reselect_again = True
            return
        try:
            filters = app.filters_for(session, self.filter_params(), self.mode)
        except SegAnyError as error:
            notify_error(error, "Thresholds not applied")
            return
        self._reselect_job = Job(
            app.reselect,
            run,
            filters,
            self.link_box.isChecked(),
            on_done=lambda selection: self._reselected(run, selection),
            on_error=lambda error: notify_error(error, "Thresholds not applied"),
        )
        self._reselect_job.start()

    def _reselected(self, run: Run, selection: PlaneSelection) -> None:
        if run is self.run:
            self._write(run, selection)
        if self._reselect_again:
            self._reselect_again = False
            self.timer.start()
