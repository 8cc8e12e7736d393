"""The curation buttons of the widget: undo/redo, delete, merge, split, refine, save,
export -- each acting on the target Labels layer through its curation
(:mod:`napari_segany.app.curating`), on the shown plane, with the objects picked by the
prompt points there (then the points are cleared).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_info
from qtpy.QtCore import QObject

from napari_segany import _layers, scripting
from napari_segany.core.errors import InputError, SegAnyError

from . import _dialogs
from ._prompting import PROMPTS
from ._workers import notify_error

LABEL_FILTERS = "Label TIFF (*.tif *.tiff);;OME-Zarr store (*.zarr)"
EXPORT_FILTERS = "Object table (*.csv);;COCO RLE annotations (*.json)"


class CurationPanel(QObject):
    """Handlers of the curation buttons (a child of the widget)."""

    def __init__(self, widget: Any) -> None:
        super().__init__(widget)
        self.widget = widget
        self.viewer = widget.viewer
        c = widget.controls
        c.undo_button.clicked.connect(self.undo)
        c.redo_button.clicked.connect(self.redo)
        c.delete_button.clicked.connect(self.delete)
        c.merge_button.clicked.connect(self.merge)
        c.split_button.clicked.connect(self.split)
        c.refine_button.clicked.connect(self.refine)
        c.save_button.clicked.connect(self.save)
        c.export_button.clicked.connect(self.export)

    # --- what the buttons act on --------------------------------------------------------
    def target(self) -> Labels | None:
        """The Labels layer chosen in the combo, or the widget's own; None if neither."""
        name = self.widget.controls.target_combo.currentText()
        for candidate in (name, scripting.LABELS_NAME):
            if candidate in self.viewer.layers and isinstance(
                self.viewer.layers[candidate], Labels
            ):
                return self.viewer.layers[candidate]
        return None

    def _picked(self) -> tuple[Any, Labels, tuple[int, ...], np.ndarray, np.ndarray]:
        """(image, target, shown plane, points_yx, their labels) or InputError."""
        image, target = self.widget.image_layer(quiet=True), self.target()
        if image is None or target is None:
            raise InputError("Pick an image and a Labels layer (commit an object first).")
        _layers.check_fits(target, image)
        index = _layers.plane_index(image, self.viewer.dims.point)
        points = self.widget.prompts.layer(PROMPTS)
        points_yx, signs = np.empty((0, 2)), np.empty(0, np.int64)
        if points is not None and points.ndim == image.ndim:
            points_yx, signs = _layers.points_on_plane(points, index, image)
        return image, target, index, points_yx, signs

    def _ids_under(self, target: Labels, index, points_yx: np.ndarray) -> list[int]:
        plane = np.asarray(target.data[index] if index else target.data)
        found = []
        for y, x in np.round(points_yx).astype(int):
            if 0 <= y < plane.shape[0] and 0 <= x < plane.shape[1] and plane[y, x]:
                found.append(int(plane[y, x]))
        return sorted(set(found))

    def _run(self, what: str, action) -> None:
        """Run ``action(image, target, index, points_yx, signs) -> status`` as one napari
        undo item; errors become a notification and change nothing."""
        if self.widget.segany is None:
            show_info("Load a model first (Load model).")
            return
        try:
            image, target, index, points_yx, signs = self._picked()
            with self.widget.curations.writing(target):
                text = action(image, target, index, points_yx, signs)
        except SegAnyError as error:
            notify_error(error, f"{what}: nothing changed")
            return
        self.widget.prompts.clear_preview()
        self.widget.prompts._remove_prompts(index, image)
        self.widget.controls.status.setText(text)

    def _curation(self, image: Any, target: Labels):
        curation = self.widget.curations.for_layer(target, image, self.widget.segany)
        curation.name = target.name
        return curation

    # --- actions ------------------------------------------------------------------------
    def _history_layer(self) -> Labels | None:
        """The Labels layer written (or undone) last, else the target."""
        last = self.widget.curations.last_layer()
        return last if last is not None and last in self.viewer.layers else self.target()

    def undo(self) -> None:
        """Undo the last step of the Labels layer written last (Shift-U)."""
        layer = self._history_layer()
        text = "nothing to undo: no Labels layer" if layer is None else (
            self.widget.curations.undo(layer))  # fmt: skip
        self.widget.controls.status.setText(text)

    def redo(self) -> None:
        """Redo the last undone step of that layer (Shift-R)."""
        layer = self._history_layer()
        text = "nothing to redo: no Labels layer" if layer is None else (
            self.widget.curations.redo(layer))  # fmt: skip
        self.widget.controls.status.setText(text)

    def delete(self) -> None:
        """Delete the objects under the points of the shown plane (Shift-D)."""

        def action(image, target, index, points_yx, signs) -> str:
            ids = self._ids_under(target, index, points_yx)
            if not ids:
                raise InputError("Click on the objects to delete (prompt points), then Delete.")
            pixels = self._curation(image, target).delete(ids, plane=index)
            return f"deleted {_ids(ids)} ({pixels} pixels) from '{target.name}'"

        self._run("Delete", action)

    def merge(self) -> None:
        """Merge the objects under the points of the shown plane into the smallest id."""

        def action(image, target, index, points_yx, signs) -> str:
            ids = self._ids_under(target, index, points_yx)
            if len(ids) < 2:
                raise InputError("Click on two or more objects to merge, then Merge.")
            kept = self._curation(image, target).merge(ids, plane=index)
            return f"merged {_ids(ids)} into object {kept} in '{target.name}'"

        self._run("Merge", action)

    def split(self) -> None:
        """Split the object under the negative points at them (a new id for that part),
        the model's part in the background."""
        if self.widget.segany is None:
            show_info("Load a model first (Load model).")
            return
        try:
            image, target, index, points_yx, signs = self._picked()
            negative = points_yx[signs == 0]
            ids = self._ids_under(target, index, negative)
            if len(ids) != 1:
                raise InputError(
                    "Shift-click (negative point) on the part of one object to cut off, then Split."
                )
            curation = self._curation(image, target)
        except SegAnyError as error:
            notify_error(error, "Split: nothing changed")
            return

        def write(answer: dict) -> str:
            new = curation.apply_split(answer)
            return f"split object {ids[0]}: the part clicked is object {new}"

        self._in_background(
            "Split", (image, target, index), write,
            lambda fork: curation.split_answer(ids[0], negative, plane=index, segany=fork),
            message=f"splitting object {ids[0]} ...",
        )  # fmt: skip

    def refine(self) -> None:
        """Refine the objects under the points (all of the shown plane without points),
        in the background; only pixels unchanged meanwhile are written."""
        if self.widget.segany is None:
            show_info("Load a model first (Load model).")
            return
        try:
            image, target, index, points_yx, _ = self._picked()
            ids = self._ids_under(target, index, points_yx) or None
            curation = self._curation(image, target)
        except SegAnyError as error:
            notify_error(error, "Refine: nothing changed")
            return

        def write(answer: dict) -> str:
            outcomes = curation.apply_refinement(answer)
            changed = sum(o.accepted for o in outcomes)
            return (
                f"refined {changed} of {len(outcomes)} objects in '{target.name}' (the "
                "others kept their pixels: the model agreed or was not sure)"
            )

        self._in_background(
            "Refine", (image, target, index), write,
            lambda fork: curation.refine_answer(ids, plane=index, segany=fork),
            message=f"refining {'all objects' if ids is None else _ids(ids)} ...",
        )  # fmt: skip

    def _in_background(self, what: str, picked: tuple, write, compute, message: str) -> None:
        """Run ``compute(fork)`` (the model's part, on a fork of the session: the
        prompts' plane stays theirs) as the widget's job; then, on the GUI thread,
        ``write(answer) -> status`` as one napari undo item, unless the target
        ``picked[1]`` was deleted meanwhile (errors: a notification, nothing written)."""
        image, target, index = picked

        def done(answer: dict) -> None:
            self.widget.controls.set_busy(False, "")
            if target not in self.viewer.layers:
                show_info(f"Labels layer '{target.name}' was deleted; nothing written.")
                return
            try:
                with self.widget.curations.writing(target):
                    text = write(answer)
            except SegAnyError as error:
                notify_error(error, f"{what}: nothing changed")
                return
            self.widget.prompts.clear_preview()
            self.widget.prompts._remove_prompts(index, image)
            self.widget.controls.status.setText(text)

        self.widget.start(compute, self.widget.segany.fork(), message=message, on_done=done)

    def save(self) -> None:
        """Save the target layer (TIFF or OME-Zarr) with its provenance sidecar."""
        image, target = self.widget.image_layer(quiet=True), self.target()
        if target is None or image is None or self.widget.segany is None:
            show_info("Load a model and pick the Labels layer to save first.")
            return
        path = _dialogs.ask_save_path(self.widget, "Save labels", LABEL_FILTERS)
        if not path:
            return
        try:
            curation = self._curation(image, target)
            written = curation.save(path, axes=_axes(target), name=_store_name(target))
        except SegAnyError as error:
            notify_error(error, "Labels not saved")
            return
        steps = len(curation.steps)
        self.widget.controls.status.setText(f"saved '{target.name}' to {written} ({steps} steps)")

    def export(self) -> None:
        """Write the target layer's per-object CSV table or COCO RLE JSON."""
        from napari_segany.core.exports import write_coco, write_object_table

        target = self.target()
        if target is None:
            show_info("Pick the Labels layer to export first.")
            return
        path = _dialogs.ask_save_path(self.widget, "Export objects", EXPORT_FILTERS)
        if not path:
            return
        try:
            if Path(path).suffix.lower() == ".json":
                written = len(write_coco(target.data, path, file_name=target.name)["annotations"])
            else:
                written = len(write_object_table(target.data, path))
        except SegAnyError as error:
            notify_error(error, "Nothing exported")
            return
        self.widget.controls.status.setText(f"exported {written} objects to {path}")


def _ids(ids: list[int]) -> str:
    return ("object " if len(ids) == 1 else "objects ") + ", ".join(map(str, ids))


def _axes(layer: Labels) -> str | None:
    """Axis letters from the layer's axis labels when they are letters (else defaults)."""
    letters = "".join(str(a)[:1].upper() for a in layer.axis_labels)
    valid = len(letters) == layer.ndim and letters.isalpha() and letters.endswith("YX")
    return letters if valid and len(set(letters)) == len(letters) else None


def _store_name(layer: Labels) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in layer.name) or "labels"
