"""The Segment Anything dock widget (first version: load, embed, click, commit).

Workflow: pick an image layer and a model, press *Load model*; the model loads and
the embedding of the shown plane is computed in a background thread (napari stays
responsive). Click positive points into the ``SegAny prompts`` Points layer (tick
*negative* to add background points) and press *Segment* (or ``Shift+S``): the best
of SAM's masks is written with a new id into the ``SegAny labels`` layer, only over
background pixels, undoable with Ctrl+Z on that layer.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Points
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_segany import _layers

logger = logging.getLogger(__name__)
PROMPTS = "SegAny prompts"
LABELS = "SegAny labels"


def _model_names() -> list[str]:
    from napari_segany.core.registry import REGISTRY

    return list(REGISTRY)


class SegAnyWidget(QWidget):
    """Dock widget: model loading, background embedding, point prompts, commit."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.segany = None  # the SegAny session, also exposed to the console
        self._worker = None
        self._build_ui()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    def _build_ui(self) -> None:
        self.image_combo = QComboBox()
        self.model_combo = QComboBox()
        self.model_combo.addItems(_model_names())
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("optional: path to a checkpoint file")
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda", "mps"])
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(["auto", "fp32", "bf16"])
        self.load_button = QPushButton("Load model")
        self.negative_box = QCheckBox("next points are negative")
        self.segment_button = QPushButton("Segment (Shift+S)")
        self.overwrite_box = QCheckBox("overwrite existing labels")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.status = QLabel("no model loaded")
        self.status.setWordWrap(True)
        form = QFormLayout()
        for text, widget in [
            ("image", self.image_combo),
            ("model", self.model_combo),
            ("checkpoint", self.checkpoint_edit),
            ("device", self.device_combo),
            ("precision", self.precision_combo),
        ]:
            form.addRow(text, widget)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in [self.load_button, self.negative_box, self.segment_button]:
            layout.addWidget(widget)
        for widget in [self.overwrite_box, self.progress, self.status]:
            layout.addWidget(widget)
        layout.addStretch()
        self.setToolTip("Shift+S: segment from the prompt points and commit")
        self.load_button.clicked.connect(self.load_model)
        self.segment_button.clicked.connect(self.segment)
        self.negative_box.toggled.connect(self._set_polarity)
        self.viewer.bind_key("Shift-S", lambda _viewer: self.segment(), overwrite=True)

    def _refresh_layers(self, *_: Any) -> None:
        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)

    def _image_layer(self) -> Image | None:
        name = self.image_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if layer is None:
            show_error("Pick an image layer first (open an image or File > Open Sample).")
        return layer

    def _busy(self, busy: bool, message: str) -> None:
        self.progress.setRange(0, 0 if busy else 1)
        self.load_button.setEnabled(not busy)
        self.segment_button.setEnabled(not busy)
        self.status.setText(message)

    def load_model(self) -> None:
        """Load the chosen model and embed the shown plane, in a background thread."""
        image = self._image_layer()
        if image is None:
            return
        index = _layers.plane_index(image, self.viewer.dims.point)
        plane = _layers.get_plane(image, index)
        options = dict(
            model=self.model_combo.currentText(),
            checkpoint=self.checkpoint_edit.text().strip() or None,
            device=self.device_combo.currentText(),
            precision=self.precision_combo.currentText(),
        )
        self._busy(True, f"loading {options['model']} and embedding plane {index} ...")
        self._run(_load_and_embed, options, plane, tuple(image.contrast_limits),
                  on_done=self._loaded)

    def _run(self, func: Any, *args: Any, on_done: Any) -> None:
        if os.environ.get("SEGANY_NOTHREADS") == "1":
            try:
                on_done(func(*args))
            except Exception as error:  # noqa: BLE001 - shown to the user
                self._failed(error)
            return
        worker = create_worker(func, *args, _start_thread=False)
        worker.returned.connect(on_done)
        worker.errored.connect(self._failed)
        self._worker = worker
        worker.start()

    def _loaded(self, segany: Any) -> None:
        self.segany = segany
        self._busy(False, f"ready: {segany!r}")
        self._ensure_prompt_layer()

    def _failed(self, error: Exception) -> None:
        self._busy(False, f"error: {error}")
        show_error(str(error))

    def _ensure_prompt_layer(self) -> Points:
        image = self._image_layer()
        if PROMPTS in self.viewer.layers:
            return self.viewer.layers[PROMPTS]
        points = self.viewer.add_points(
            np.empty((0, image.ndim)), name=PROMPTS, scale=image.scale, translate=image.translate,
            features={"positive": np.empty(0, dtype=bool)}, face_color="positive",
            face_color_cycle=["red", "lime"], size=8,
        )
        points.feature_defaults["positive"] = not self.negative_box.isChecked()
        points.mode = "add"
        return points

    def _set_polarity(self, negative: bool) -> None:
        if PROMPTS in self.viewer.layers:
            self.viewer.layers[PROMPTS].feature_defaults["positive"] = not negative

    def _labels_layer(self, image: Image) -> Labels:
        if LABELS in self.viewer.layers:
            return self.viewer.layers[LABELS]
        shape = image.data.shape[:-1] if image.rgb else image.data.shape
        return self.viewer.add_labels(
            np.zeros(shape, dtype=np.int32), name=LABELS, scale=image.scale,
            translate=image.translate,
        )

    def segment(self) -> None:
        """Segment the object marked by the prompt points and commit it to the labels."""
        image = self._image_layer()
        if image is None or self.segany is None:
            show_info("Load a model first (Load model).")
            return
        if PROMPTS not in self.viewer.layers:
            show_info("Add points to the 'SegAny prompts' layer first.")
            return
        index = _layers.plane_index(image, self.viewer.dims.point)
        points_yx, labels = _layers.points_on_plane(self.viewer.layers[PROMPTS], index)
        if len(points_yx) == 0:
            show_info(f"No prompt points on plane {index}: click on the object first.")
            return
        plane = _layers.get_plane(image, index)
        try:
            self.segany.set_image(plane, contrast_limits=tuple(image.contrast_limits))
            result = self.segany.segment(points_yx=points_yx, labels=labels, multimask=True)
        except Exception as error:  # noqa: BLE001 - shown to the user
            self._failed(error)
            return
        best = int(np.argmax(result.scores))
        labels_layer = self._labels_layer(image)
        new_id = _layers.commit_mask(
            labels_layer, index, result.masks[best], overwrite=self.overwrite_box.isChecked()
        )
        self.viewer.layers[PROMPTS].data = np.empty((0, image.ndim))
        self.status.setText(
            f"object {new_id} committed (score {result.scores[best]:.2f})" if new_id
            else "nothing committed: the mask lies on existing labels only"
        )


def _load_and_embed(options: dict, plane: np.ndarray, contrast_limits: tuple) -> Any:
    """Worker body: build the SegAny session and embed ``plane`` (cached afterwards)."""
    from napari_segany.api import SegAny

    segany = SegAny(**options)
    segany.set_image(plane, contrast_limits=contrast_limits)
    return segany
