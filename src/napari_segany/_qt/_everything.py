"""Everything mode in the dock widget: controls, background runs, live thresholds.

*Segment everything: current slice* (Shift-E) or *whole stack* decodes SAM's point grid
in the widget's background job (progress bar, Cancel) and writes the objects into a
Labels layer: by default a layer of its own, ``SegAny everything`` (one per image,
reused by later runs, whose planes it replaces); or a Labels layer the user picks, where
only background pixels are written unless *overwrite* is ticked -- the user's labels
are never overwritten silently. Every write is one undo step. Results land on the
planes they were computed for, whatever the viewer shows meanwhile.

After a run, changing a threshold (predicted IoU, stability, box NMS, minimum region
area) or *link* re-applies the selection to the kept grid candidates after a short
pause, without the model, and rewrites the same planes -- unless the user edited them
since (then nothing is changed and a notification says so).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QObject, QTimer
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
from napari_segany.core.errors import SegAnyError

from ._controls import NEW_LAYER
from ._everything_work import Selection, decode_planes, select_planes
from ._workers import Job, notify_error

logger = logging.getLogger(__name__)
EVERYTHING = "SegAny everything"
PROPOSAL_CHOICES = (("point grid", "grid"), ("foreground head", "foreground"))
# (text, head_zoom) of the foreground head's zoom (core.seeds.find_objects)
ZOOM_CHOICES = (
    ("auto", 0),
    ("none (whole plane)", 1),
    ("2 x 2 tiles", 2),
    ("3 x 3 tiles", 3),
    ("4 x 4 tiles", 4),
)
RESELECT_MS = 300


@dataclass(eq=False)
class Run:
    """One everything-mode run: where it came from, its candidates, where it was written."""

    image: Any
    indices: list[tuple[int, ...]]
    candidates: dict
    stack: bool
    target: Any = None
    own: bool = True
    offset: int = 0
    overwrite: bool = False
    bases: dict = field(default_factory=dict)
    written: dict = field(default_factory=dict)


def _model_parameters(session: Any) -> dict:
    """Everything-mode parameters ``session`` runs with by default (the model's, with
    its clicked-part rule); ``{}`` (SAM's) for a session without them or none."""
    return getattr(session, "everything_parameters", dict)()


def _spin(low: float, high: float, value: float, tip: str, step: float = 0.01) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setDecimals(2)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


class EverythingPanel(QObject):
    """The *Everything mode* group of the widget and its behaviour (a child of the widget)."""

    def __init__(self, widget: Any) -> None:
        super().__init__(widget)
        self.widget = widget
        self.viewer = widget.viewer
        self.run: Run | None = None
        self._own: list[tuple[Any, Labels]] = []  # (image layer, its everything layer)
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
        self.points_spin.valueChanged.connect(self._grid_changed)
        self.proposals_combo.currentIndexChanged.connect(self._grid_changed)
        self.proposals_combo.currentIndexChanged.connect(self._show_grid_size)
        self.zoom_combo.currentIndexChanged.connect(self._grid_changed)
        self.slice_button.clicked.connect(lambda: self.segment(stack=False))
        self.stack_button.clicked.connect(lambda: self.segment(stack=True))

    # --- controls ---------------------------------------------------------------------
    def _build(self) -> QGroupBox:
        box = QGroupBox("Everything mode (click to open)")
        box.setCheckable(True)
        box.setChecked(False)
        inner = QWidget()
        form = QFormLayout(inner)
        form.setContentsMargins(0, 0, 0, 0)
        self.proposals_combo = QComboBox()
        for text, value in PROPOSAL_CHOICES:
            self.proposals_combo.addItem(text, value)
        self._foreground_choice().setEnabled(False)  # until a model with a head loads
        self.proposals_combo.setToolTip(
            "where the objects come from: SAM's grid of point prompts, or the objects "
            "of the model's foreground head (the built-in model's default; its point "
            "grid works best at pred IoU 0.45, stability 0, box NMS 0.02)"
        )
        self.zoom_combo = QComboBox()
        for text, value in ZOOM_CHOICES:
            self.zoom_combo.addItem(text, value)
        self.zoom_combo.setToolTip(
            "foreground head: find small objects on enlarged tiles of the slice; 'auto' "
            "zooms in where the slice's objects are a few pixels across in the model's "
            "512 px frame (prompts snap to the objects 'auto' finds)"
        )
        self.points_spin = QSpinBox()
        self.points_spin.setRange(1, 128)
        self.points_spin.setValue(32)
        self.points_spin.setToolTip("grid of N x N point prompts; changing it needs a new run")
        self.iou_spin = _spin(0, 1, 0.88, "keep masks whose predicted IoU is above this")
        self.stability_spin = _spin(0, 1, 0.95, "keep masks at least this stable")
        self.nms_spin = _spin(0, 1, 0.7, "drop a mask whose box overlaps a better one this much")
        self.min_area_spin = QSpinBox()
        self.min_area_spin.setRange(0, 1_000_000)
        self.min_area_spin.setSingleStep(10)
        self.min_area_spin.setToolTip("remove holes and islands smaller than this (pixels)")
        self.link_box = QCheckBox("link objects across slices")
        self.link_box.setChecked(True)
        self.link_box.setToolTip("whole stack: an object keeps one id along the last axis")
        self.target_combo = QComboBox()
        self.target_combo.addItem(NEW_LAYER)
        self.target_combo.setToolTip(f"'{NEW_LAYER}': the layer '{EVERYTHING}'")
        self.overwrite_box = QCheckBox("overwrite existing labels")
        self.slice_button = QPushButton("Segment everything: current slice (Shift-E)")
        self.stack_button = QPushButton("Segment everything: whole stack")
        self.summary = QLabel("thresholds re-apply at once after a run")
        self.summary.setWordWrap(True)
        for label, item in (
            ("proposals", self.proposals_combo),
            ("zoom", self.zoom_combo),
            ("points per side", self.points_spin),
            ("pred IoU thresh", self.iou_spin),
            ("stability thresh", self.stability_spin),
            ("box NMS thresh", self.nms_spin),
            ("min region area", self.min_area_spin),
            ("labels", self.target_combo),
        ):
            form.addRow(label, item)
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

    @property
    def buttons(self) -> list[QPushButton]:
        """Buttons that start work (disabled while the widget is busy)."""
        return [self.slice_button, self.stack_button]

    def grid_params(self) -> dict:
        """Parameters of the expensive phase: the panel's grid, and the session's
        clicked-part rule (on for the built-in model)."""
        params = {"points_per_side": self.points_spin.value()}
        if _model_parameters(self.widget.segany).get("clicked_component_only", False):
            params["clicked_component_only"] = True
        if self.proposals_combo.currentData() != "grid":
            params["proposals"] = self.proposals_combo.currentData()
            if self.zoom_combo.currentData():
                params["head_zoom"] = self.zoom_combo.currentData()
        return params

    def use_model_defaults(self, session: Any) -> None:
        """Show ``session``'s everything-mode defaults (SAM's where it sets none).

        Called when a model is loaded; a finished run is not re-selected by it.
        """
        from napari_segany.core.automatic import GridParams
        from napari_segany.core.everything_select import FilterParams

        values = {"points_per_side": GridParams().points_per_side, **asdict(FilterParams())}
        chosen = _model_parameters(session)
        values.update({name: chosen[name] for name in values if name in chosen})
        for name, spin in (
            ("points_per_side", self.points_spin),
            ("pred_iou_thresh", self.iou_spin),
            ("stability_score_thresh", self.stability_spin),
            ("box_nms_thresh", self.nms_spin),
            ("min_mask_region_area", self.min_area_spin),
        ):
            spin.blockSignals(True)
            spin.setValue(values[name])
            spin.blockSignals(False)
        model = getattr(getattr(session, "predictor", None), "model", None)
        has_head = getattr(model, "foreground_head", None) is not None
        self._foreground_choice().setEnabled(has_head)
        self.proposals_combo.blockSignals(True)
        self.proposals_combo.setCurrentIndex(
            self.proposals_combo.findData(chosen.get("proposals", "grid") if has_head else "grid")
        )
        self.proposals_combo.blockSignals(False)
        self.zoom_combo.blockSignals(True)
        self.zoom_combo.setCurrentIndex(self.zoom_combo.findData(chosen.get("head_zoom", 0)))
        self.zoom_combo.blockSignals(False)
        self._show_grid_size()

    def _foreground_choice(self) -> Any:
        """The combo's *foreground head* item (offered only for a model with a head)."""
        return self.proposals_combo.model().item(self.proposals_combo.findData("foreground"))

    def _show_grid_size(self, *_: Any) -> None:
        """Points per side only matters for the point grid, the zoom for the head."""
        grid = self.proposals_combo.currentData() == "grid"
        self.points_spin.setEnabled(grid)
        self.zoom_combo.setEnabled(not grid)

    def filter_params(self) -> dict:
        """Thresholds shown in the panel (the cheap phase)."""
        return {
            "pred_iou_thresh": round(self.iou_spin.value(), 4),
            "stability_score_thresh": round(self.stability_spin.value(), 4),
            "box_nms_thresh": round(self.nms_spin.value(), 4),
            "min_mask_region_area": self.min_area_spin.value(),
        }

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
        session, image = self.widget.segany, self.widget.image_layer()
        if image is None:
            return
        if session is None:
            show_info("Load a model first (Load model).")
            return
        if stack:
            indices = [tuple(int(i) for i in ix) for ix in np.ndindex(*self._lead_shape(image))]
        else:
            indices = [_layers.plane_index(image, self.viewer.dims.point)]
        link = stack and self.link_box.isChecked()
        where = f"{len(indices)} planes" if stack else f"plane {indices[0] or ''}".strip()
        self.timer.stop()
        self.widget.start(
            decode_planes,
            session,
            image,
            indices,
            _layers.contrast_of(image),
            self.grid_params(),
            self.filter_params(),
            link,
            message=f"everything mode on {where} ...",
            on_done=lambda out: self._decoded(Run(image, indices, out[0], stack), out[1]),
            on_progress=self.widget.progress_display(),
            determinate=True,
            pass_cancel_event=True,
        )

    @staticmethod
    def _lead_shape(image: Any) -> tuple[int, ...]:
        return _layers.plane_shape(image)[:-2]

    def _decoded(self, run: Run, selection: Selection) -> None:
        self.widget.controls.set_busy(False, "everything mode done", determinate=True)
        if run.image not in self.viewer.layers:
            show_warning(
                f"Image layer '{run.image.name}' was deleted during everything mode; "
                "nothing was written."
            )
            return
        try:
            run.target, run.own = self._target(run.image)
        except SegAnyError as error:
            notify_error(error, "Everything mode wrote nothing")
            return
        run.overwrite = self.overwrite_box.isChecked()
        if run.own:
            run.bases = dict.fromkeys(run.indices)
            run.offset = _layers.free_id_outside(run.target, run.indices)
        else:
            run.bases = {i: _plane(run.target, i).copy() for i in run.indices}
            run.offset = int(np.max(run.target.data, initial=0))
        self.run = run
        self._write(run, selection)

    def _target(self, image: Any) -> tuple[Labels, bool]:
        """The Labels layer to write into and whether it is the panel's own layer."""
        name = self.target_combo.currentText()
        if name != NEW_LAYER and name in self.viewer.layers:
            layer = self.viewer.layers[name]
            _layers.check_fits(layer, image)
            return layer, any(own is layer for _, own in self._own)
        for source, own in self._own:
            fits = tuple(own.data.shape) == _layers.plane_shape(image)
            if source is image and own in self.viewer.layers and fits:
                return own, True
        active = self.viewer.layers.selection.active
        own = self.viewer.add_labels(
            np.zeros(_layers.plane_shape(image), dtype=np.int32),
            name=EVERYTHING,
            scale=image.scale,
            translate=image.translate,
        )
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active  # keep the prompts layer active
        self._own.append((image, own))
        return own, True

    def _write(self, run: Run, selection: Selection) -> None:
        target = run.target
        if target not in self.viewer.layers:
            show_warning(f"Labels layer '{target.name}' was deleted; run everything mode again.")
            self.run = None
            return
        edited = [
            i for i, plane in run.written.items() if not np.array_equal(_plane(target, i), plane)
        ]
        if edited:
            show_warning(
                f"'{target.name}' was edited since everything mode wrote it (planes "
                f"{edited[:3]}); the new thresholds were not applied. Run it again."
            )
            return
        try:
            run.written = _layers.write_label_planes(
                target, selection.planes, run.bases, run.offset, run.overwrite
            )
        except SegAnyError as error:
            notify_error(error, "Everything mode wrote nothing")
            return
        for note in selection.warnings[:3]:
            show_warning(note)
        where = f"{len(run.indices)} planes" if run.stack else f"plane {run.indices[0]}"
        text = f"{selection.n_objects} objects on {where} in '{target.name}'"
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
        run = self.run
        if run is None:
            return
        if self._reselect_job is not None and not self._reselect_job.finished:
            self._reselect_again = True
            return
        self._reselect_job = Job(
            select_planes,
            run.candidates,
            self.filter_params(),
            run.stack and self.link_box.isChecked(),
            on_done=lambda selection: self._reselected(run, selection),
            on_error=lambda error: notify_error(error, "Thresholds not applied"),
        )
        self._reselect_job.start()

    def _reselected(self, run: Run, selection: Selection) -> None:
        if run is self.run:
            self._write(run, selection)
        if self._reselect_again:
            self._reselect_again = False
            self.timer.start()


def _plane(layer: Any, index: tuple[int, ...]) -> np.ndarray:
    return np.asarray(layer.data[index] if index else layer.data)
