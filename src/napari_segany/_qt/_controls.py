"""The widget's controls (Qt only, no behaviour): built once, wired by ``widget.py``."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

NEW_LAYER = "new layer"


def _model_names() -> list[str]:
    from napari_segany.core.registry import REGISTRY

    return list(REGISTRY)


def _model_description(name: str) -> str:
    """The registry's one-line description of ``name`` ('' for unknown names)."""
    from napari_segany.core.registry import REGISTRY

    entry = REGISTRY.get(name)
    return entry.description if entry is not None else ""


def _default_model() -> str | None:
    """The registry's default model (``DEFAULT_MODEL`` when it names one), else None."""
    from napari_segany.core import registry

    name = registry.DEFAULT_MODEL
    return name if name in registry.REGISTRY else None


class Controls:
    """Every control of the dock widget, laid out in ``parent``.

    Groups: model (image, model, checkpoint, device, precision, Load), work (progress,
    Cancel, status), prompts (polarity, candidate, clear), commit (target, overwrite,
    Commit) and stack (Compute all slices); more sections come with :meth:`add_section`.
    """

    def __init__(self, parent: QWidget) -> None:
        layout = QVBoxLayout(parent)
        layout.addWidget(self._model_group())
        layout.addLayout(self._work_row())
        self.status = QLabel("Pick an image and press Load model.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addWidget(self._prompt_group())
        layout.addWidget(self._commit_group())
        self.compute_all_button = QPushButton("Compute all slices")
        self.compute_all_button.setToolTip(
            "Embed every slice of the stack in the background, so prompts on any slice "
            "answer at once."
        )
        layout.addWidget(self.compute_all_button)
        layout.addStretch()
        self.layout = layout
        self.busy_buttons = [self.load_button, self.compute_all_button]

    def add_section(self, widget: QWidget) -> None:
        """Add a section (e.g. the everything-mode group) below the others."""
        self.layout.insertWidget(self.layout.count() - 1, widget)

    def _model_group(self) -> QGroupBox:
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.image_combo = QComboBox()
        self.model_combo = QComboBox()
        for index, name in enumerate(_model_names()):
            self.model_combo.addItem(name)
            self.model_combo.setItemData(index, _model_description(name), Qt.ToolTipRole)
        # What the chosen model is, e.g. that "builtin" was trained on synthetic images.
        self.model_note = QLabel()
        self.model_note.setWordWrap(True)
        self.model_combo.currentTextChanged.connect(self._describe_model)
        if _default_model() is not None:
            self.model_combo.setCurrentText(_default_model())
        self._describe_model(self.model_combo.currentText())
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("optional: local checkpoint file (offline)")
        self.browse_button = QPushButton("…")
        self.browse_button.setMaximumWidth(30)
        self.browse_button.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.checkpoint_edit)
        row.addWidget(self.browse_button)
        self.store_edit = QLineEdit()
        self.store_edit.setPlaceholderText("optional: folder to keep embeddings on disk")
        self.store_edit.setToolTip(
            "a folder (new, or made here before) where plane embeddings are kept: an image "
            "opened again is not embedded again; entries of other models or settings are "
            "never used"
        )
        self.store_button = QPushButton("…")
        self.store_button.setMaximumWidth(30)
        self.store_button.clicked.connect(self._browse_store)
        store_row = QHBoxLayout()
        store_row.addWidget(self.store_edit)
        store_row.addWidget(self.store_button)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda", "mps"])
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(["auto", "fp32", "bf16"])
        self.load_button = QPushButton("Load model")
        # How the loaded model reads the chosen image's channels (set by the widget).
        self.channels_note = QLabel()
        self.channels_note.setWordWrap(True)
        form.addRow("image", self.image_combo)
        form.addRow(self.channels_note)
        form.addRow("model", self.model_combo)
        form.addRow(self.model_note)
        form.addRow("checkpoint", row)
        form.addRow("embeddings", store_row)
        form.addRow("device", self.device_combo)
        form.addRow("precision", self.precision_combo)
        form.addRow(self.load_button)
        return box

    def _describe_model(self, name: str) -> None:
        description = _model_description(name)
        self.model_note.setText(f"<small>{description}</small>" if description else "")
        self.model_note.setToolTip(description)  # the full text, however it wraps
        self.model_combo.setToolTip(description or "registry name; downloaded once into the cache")

    def _work_row(self) -> QHBoxLayout:
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row = QHBoxLayout()
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        return row

    def _prompt_group(self) -> QGroupBox:
        box = QGroupBox("Prompts")
        column = QVBoxLayout(box)
        self.negative_box = QCheckBox("next points negative (Shift-N)")
        self.negative_box.setToolTip("Shift-click adds one negative point without this")
        self.candidate_label = QLabel("no preview")
        self.candidate_button = QPushButton("Next candidate (Shift-M)")
        self.clear_button = QPushButton("Clear (Shift-X)")
        self.clear_button.setToolTip("remove the prompts of the shown slice")
        row = QHBoxLayout()
        row.addWidget(self.candidate_button)
        row.addWidget(self.clear_button)
        for item in (self.negative_box, self.candidate_label):
            column.addWidget(item)
        column.addLayout(row)
        return box

    def _commit_group(self) -> QGroupBox:
        box = QGroupBox("Commit and curate")
        form = QFormLayout(box)
        self.target_combo = QComboBox()
        self.target_combo.addItem(NEW_LAYER)
        self.target_combo.setToolTip(
            "the Labels layer new objects go into, and whose objects are curated (any "
            "Labels layer: Cellpose or StarDist output, a threshold, an earlier session)"
        )
        self.overwrite_box = QCheckBox("overwrite existing labels")
        self.route_box = QCheckBox("a click on an object corrects it")
        self.route_box.setChecked(True)
        self.route_box.setToolTip(
            "a positive click inside an object of the labels layer re-segments that object "
            "(its box, its mask and your clicks; negative clicks cut parts off); a click on "
            "background starts a new object"
        )
        self.commit_button = QPushButton("Commit (Shift-S)")
        self.undo_button = QPushButton("Undo (Shift-U)")
        self.undo_button.setToolTip(
            "take back the last step in the labels layer: a commit, correction, delete, "
            "merge, split, refinement, everything-mode write or brush stroke (Ctrl-Z on a "
            "prompt layer does the same)"
        )
        self.redo_button = QPushButton("Redo (Shift-R)")
        self.delete_button = QPushButton("Delete (Shift-D)")
        self.delete_button.setToolTip("delete the objects under the prompt points (shown slice)")
        self.merge_button = QPushButton("Merge")
        self.merge_button.setToolTip("merge the objects under the points into the smallest id")
        self.split_button = QPushButton("Split")
        self.split_button.setToolTip(
            "split the object under a negative point (Shift-click): the part around the "
            "point gets a new id"
        )
        self.refine_button = QPushButton("Refine")
        self.refine_button.setToolTip(
            "re-fit the objects under the points (all of the shown slice without points) "
            "with the model; objects it cannot improve keep their pixels"
        )
        self.save_button = QPushButton("Save labels…")
        self.save_button.setToolTip(
            "save the labels layer (TIFF or OME-Zarr) with a JSON record of how they were "
            "made (napari-segany replay makes them again)"
        )
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("per-object CSV table (.csv) or COCO RLE JSON (.json)")
        form.addRow("labels", self.target_combo)
        form.addRow(self.overwrite_box)
        form.addRow(self.route_box)
        for buttons in (
            (self.commit_button, self.undo_button, self.redo_button),
            (self.delete_button, self.merge_button, self.split_button, self.refine_button),
            (self.save_button, self.export_button),
        ):
            row = QHBoxLayout()
            for button in buttons:
                row.addWidget(button)
            form.addRow(row)
        return box

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            None, "SAM checkpoint", "", "Checkpoints (*.pth *.pt *.ckpt);;All files (*)"
        )
        if path:
            self.checkpoint_edit.setText(path)

    def _browse_store(self) -> None:
        path = QFileDialog.getExistingDirectory(None, "Folder to keep embeddings in")
        if path:
            self.store_edit.setText(path)

    def set_busy(self, busy: bool, message: str, determinate: bool = False) -> None:
        """Show work in progress (busy bar and Cancel) or idle, with ``message``."""
        self.progress.setRange(0, 100 if determinate else (0 if busy else 1))
        self.progress.setValue(0 if busy else (100 if determinate else 0))
        self.cancel_button.setEnabled(busy)
        for button in self.busy_buttons:
            button.setEnabled(not busy)
        self.status.setText(message)

    @staticmethod
    def refill(combo: QComboBox, names: list[str]) -> None:
        """Replace the items of ``combo``, keeping the current choice when it still exists."""
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        if current in names:
            combo.setCurrentText(current)
        combo.blockSignals(False)
