"""The Segment Anything dock widget (Plugins > Segment Anything).

Workflow: pick an image layer and a model, press *Load model*; the model loads and the
shown plane is prepared in a background thread (napari stays responsive, Cancel drops
the work). Click into the ``SegAny prompts`` Points layer (Shift-click: negative point)
or draw rectangles into ``SegAny boxes`` (one object per box): a live preview follows
every change. Shift-M cycles SAM's candidates, Shift-S commits the preview into the
target Labels layer with new ids, over background pixels only unless *overwrite* is
ticked; *Undo commit* (or Ctrl-Z with a prompt layer selected) takes it back. A layer
too narrow for the new ids (a uint8 0/255 mask) is widened only after asking.
*Everything mode* (Shift-E for the shown slice, or the whole stack) segments every
object into a Labels layer, its thresholds re-applied without the model
(``_everything.py``); *Through the stack* propagates a slice's objects (``_volume.py``).
The controls scroll, so the dock never grows past the screen. See ``docs/usage.md``.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from napari.layers import Image, Labels
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from napari_segany import _layers, scripting
from napari_segany.app.curating import LayerCurations
from napari_segany.app.prompting import prepare_planes
from napari_segany.app.sessions import PromptSession
from napari_segany.core.errors import SegAnyError

from . import _keys
from ._controls import NEW_LAYER, Controls
from ._curation import CurationPanel
from ._everything import EVERYTHING, EverythingPanel
from ._prompting import BOXES, PREVIEW, PROMPTS, PromptController
from ._scroll import scroll_area as _scroll_area
from ._volume import VolumePanel
from ._workers import Job, eta_text, notify_error, prepare_cancellable

logger = logging.getLogger(__name__)
LABELS = scripting.LABELS_NAME
__all__ = ["BOXES", "EVERYTHING", "LABELS", "PREVIEW", "PROMPTS", "SegAnyWidget"]


class SegAnyWidget(QWidget):
    """Dock widget: model loading, background embedding, prompts, preview, commit, stacks.

    Attributes
    ----------
    segany : PromptSession or None
        The session, e.g. a ``SegAny`` (also ``segany`` in the napari console);
        everything mode needs an ``app.sessions.EverythingSession`` too.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.segany: PromptSession | None = None
        self._job: Job | None = None
        self._shown_once = False
        self._names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> name
        self.curations = LayerCurations()  # one history (undo/redo) per Labels layer
        self.scroll = _scroll_area(self)
        self.controls = Controls(self.scroll.widget())
        self.prompts = PromptController(self)
        self.everything = EverythingPanel(self)
        self.volume = VolumePanel(self)
        self.curation = CurationPanel(self)
        for section in (self.everything.box, self.volume.box):
            self.controls.add_section(section)
        self.controls.busy_buttons += [*self.everything.buttons, self.volume.button]
        self._wire()
        _keys.bind(self.viewer, self)
        self.setToolTip(_keys.tooltip())
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    def showEvent(self, event: Any) -> None:
        """The first time the dock is shown, fit the image to the canvas it narrowed."""
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            QTimer.singleShot(0, self.viewer.reset_view)  # after the dock is laid out

    def _wire(self) -> None:
        c = self.controls
        c.load_button.clicked.connect(self.load_model)
        c.cancel_button.clicked.connect(self.cancel)
        c.commit_button.clicked.connect(self.commit)
        c.candidate_button.clicked.connect(self.next_candidate)
        c.clear_button.clicked.connect(self.clear_prompts)
        c.compute_all_button.clicked.connect(self.compute_all_slices)
        c.negative_box.toggled.connect(self.prompts.set_negative)
        c.image_combo.currentTextChanged.connect(self._image_changed)

    # --- layers ---------------------------------------------------------------------
    def _refresh_layers(self, *_: Any) -> None:
        for layer in self.viewer.layers:
            if layer not in self._names:
                layer.events.name.connect(self._renamed)
            self._names[layer] = layer.name
        images = [la.name for la in self.viewer.layers if isinstance(la, Image)]
        labels = [la.name for la in self.viewer.layers if isinstance(la, Labels)]
        labels = [name for name in labels if name != PREVIEW]  # ours
        before = self.controls.image_combo.currentText()
        Controls.refill(self.controls.image_combo, images)
        Controls.refill(self.controls.target_combo, [NEW_LAYER, *labels])
        self.everything.refresh_layers(labels)
        if self.controls.image_combo.currentText() != before:
            self._image_changed()

    def _renamed(self, event: Any) -> None:
        """A renamed layer stays chosen where it was (its history goes with it)."""
        old = self._names.get(event.source)
        combos = (self.controls.image_combo, self.controls.target_combo,
                  self.everything.target_combo)  # fmt: skip
        chosen = [combo for combo in combos if combo.currentText() == old]
        self._refresh_layers()
        for combo in chosen:
            combo.setCurrentText(event.source.name)

    def image_layer(self, quiet: bool = False) -> Image | None:
        """The chosen image layer (None, with a notification unless ``quiet``, if none)."""
        name = self.controls.image_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if layer is None and not quiet:
            show_info("Pick an image layer first (open an image or File > Open Sample).")
        return layer

    def target_labels(self, image: Image) -> Labels:
        """The Labels layer to commit into: the one picked, or a new one fitting ``image``.

        Raises
        ------
        InputError
            If the picked layer does not have the image's shape.
        """
        name = self.controls.target_combo.currentText()
        if name == NEW_LAYER or name not in self.viewer.layers:
            name = LABELS
        active = self.viewer.layers.selection.active
        target = scripting.target_labels(self.viewer, image, name)
        self.controls.target_combo.setCurrentText(target.name)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        return target

    def _image_changed(self, *_: Any) -> None:
        image = self.image_layer(quiet=True)
        self._describe_channels(image)
        if image is None or self.segany is None:
            return
        self.prompts.clear_preview()
        self.prompts.ensure_layers(image)
        self.prompts.schedule()

    # --- work -----------------------------------------------------------------------
    def idle(self) -> bool:
        """True when no model load or whole-stack job is running."""
        return self._job is None or self._job.finished

    def show_work(self, busy: bool, message: str, determinate: bool = False) -> None:
        """Show a busy / idle state with ``message`` (a long job keeps its own display)."""
        if self.idle():
            self.controls.set_busy(busy, message, determinate)

    def start(self, work: Any, *args: Any, message: str, on_done: Any, **kw: Any) -> bool:
        """Run ``work(*args)`` as the one long job (progress bar, Cancel); False if busy.

        Keywords: ``determinate`` (a percentage bar), ``on_progress`` and
        ``pass_cancel_event`` (see :class:`Job`).
        """
        if not self.idle():
            show_info("Still working: wait, or press Cancel first.")
            return False
        self.controls.set_busy(True, message, determinate=kw.pop("determinate", False))
        self._job = Job(work, *args, on_done=on_done, on_error=self._failed, **kw)
        self._job.start()
        return True

    def progress_display(self) -> Any:
        """A ``Progress`` callback showing percentage, message and ETA from now on."""
        started = time.perf_counter()

        def progress(report: Any) -> None:
            self.controls.progress.setValue(int(100 * report.fraction))
            self.controls.status.setText(f"{report.message}: {eta_text(report, started)}")

        return progress

    def cancel(self) -> None:
        """Cancel the running work (its result is dropped; labels are unchanged)."""
        if self._job is not None:
            self._job.cancel()
        self.prompts.cancel()
        self.controls.set_busy(False, "cancelled")

    def _failed(self, error: BaseException) -> None:
        self.controls.set_busy(False, "")
        self.controls.status.setText(notify_error(error))

    # --- session --------------------------------------------------------------------
    def load_model(self) -> None:
        """Load the chosen model and prepare the shown plane, in a background thread."""
        image = self.image_layer()
        if image is None:
            return
        c = self.controls
        options = dict(
            model=c.model_combo.currentText(),
            checkpoint=c.checkpoint_edit.text().strip() or None,
            device=c.device_combo.currentText(),
            precision=c.precision_combo.currentText(),
            embedding_store=c.store_edit.text().strip() or None,
        )
        index, plane = self._shown_plane(image)
        self.prompts.ensure_layers(image)  # the user may click while the model loads
        message = f"loading {options['model']} and {_preparing(image, index)} ..."
        limits = _layers.contrast_of(image)
        self.start(
            _load_and_prepare,
            options,
            plane,
            limits,
            message=message,
            on_done=self._ready,
            pass_cancel_event=True,
        )

    def use_session(self, segany: PromptSession) -> None:
        """Use an existing session (scripts, tests) and prepare the shown plane."""
        image = self.image_layer()
        if image is None:
            return
        index, plane = self._shown_plane(image)
        self.prompts.ensure_layers(image)
        limits = _layers.contrast_of(image)
        self.start(
            _prepare,
            segany,
            plane,
            limits,
            message=f"{_preparing(image, index)} ...",
            on_done=self._ready,
            pass_cancel_event=True,
        )

    def _describe_channels(self, image: Image | None) -> None:
        """Show how the model reads ``image``'s channels (colour planes: their pixels)."""
        note = self.controls.channels_note
        if image is None or self.segany is None:
            note.setText("")
            return
        try:
            plane = self._shown_plane(image)[1] if image.rgb else _layers.plane_shape(image)[-2:]
            text = self.segany.predictor.describe_channels(plane)
        except SegAnyError as error:  # e.g. a layout the model cannot read
            text = str(error)
        note.setText(f"<small>model sees: {text}</small>")
        note.setToolTip(f"How the model reads this image's channels: {text}")

    def _shown_plane(self, image: Image) -> tuple[tuple[int, ...], Any]:
        index = _layers.plane_index(image, self.viewer.dims.point)
        return index, _layers.get_plane(image, index)

    def _ready(self, segany: Any) -> None:
        self.segany = segany
        self.curations.use_session(segany)  # the previous model is not held on
        self._describe_channels(self.image_layer(quiet=True))
        self.everything.use_model_defaults(segany)
        scripting.register_session(self.viewer, segany)
        self.controls.set_busy(False, f"ready: {segany!r}")
        try:
            self.viewer.update_console(
                {"segany": segany, "segment_layers": scripting.segment_layers}
            )
        except Exception:
            logger.debug("napari console not available", exc_info=True)
        self.prompts.schedule()

    # --- stacks ---------------------------------------------------------------------
    def compute_all_slices(self) -> None:
        """Prepare every plane of the image in the background (progress, ETA, Cancel)."""
        image = self.image_layer()
        if image is None:
            return
        if self.segany is None:
            show_info("Load a model first (Load model).")
            return
        self.start(
            prepare_planes,
            self.segany,
            image,
            message="preparing all planes ...",
            on_done=lambda counts: self._all_prepared(image, *counts),
            on_progress=self.progress_display(),
            determinate=True,
        )

    def _all_prepared(self, image: Image, count: int, kept: int) -> None:
        self.controls.set_busy(False, f"{count} planes prepared", determinate=True)
        if image not in self.viewer.layers:
            show_warning(f"Image layer '{image.name}' was deleted while its planes were prepared.")
        if kept < count:
            show_warning(
                f"{kept} of {count} planes are still prepared (embeddings beyond the cache, "
                "or the model's per-plane preparation of more than the last 8 planes, are "
                "not kept); the others are prepared again in the background when visited."
            )

    # --- prompt actions (buttons and keys) --------------------------------------------
    def commit(self) -> None:
        """Commit the preview into the target Labels layer (Shift-S)."""
        if self.segany is None:
            show_info("Load a model first (Load model).")
            return
        self.prompts.commit()

    segment = commit  # the name of the first widget version

    def undo(self) -> None:
        """Undo the last step in the target Labels layer (Shift-U; Ctrl-Z on the prompt
        layers): a commit, correction, curation edit, everything-mode write or stroke."""
        self.curation.undo()

    undo_commit = undo  # the name of the first widget version

    def redo(self) -> None:
        """Redo the last undone step in the target Labels layer (Shift-R)."""
        self.curation.redo()

    def delete_objects(self) -> None:
        """Delete the objects under the prompt points of the shown plane (Shift-D)."""
        self.curation.delete()

    def next_candidate(self) -> None:
        """Show the next of SAM's three candidate masks (Shift-M)."""
        self.prompts.next_candidate()

    def segment_everything(self) -> None:
        """Everything mode on the shown slice (Shift-E); see the Everything mode group."""
        self.everything.segment(stack=False)

    def segment_everything_stack(self) -> None:
        """Everything mode on every slice of the image (ids unique in the stack)."""
        self.everything.segment(stack=True)

    def toggle_polarity(self) -> None:
        """Toggle whether the next points are negative (Shift-N)."""
        self.controls.negative_box.toggle()

    def clear_prompts(self) -> None:
        """Remove the prompts of the shown plane (Shift-X)."""
        self.prompts.clear_prompts()

    def closeEvent(self, event: Any) -> None:
        """Unbind the shortcuts when the widget closes."""
        _keys.unbind(self.viewer)
        super().closeEvent(event)


def _preparing(image: Image, index: tuple[int, ...]) -> str:
    """``"preparing the image"`` (2D) or ``"preparing plane z=3"``."""
    words = _layers.plane_words(index, image.axis_labels)
    return f"preparing {words or 'the image'}"


def _load_and_prepare(options: dict, plane: Any, contrast_limits: Any, cancel_event: Any) -> Any:
    """Worker body: build the SegAny session and prepare ``plane`` (kept afterwards)."""
    from napari_segany.api import SegAny

    return _prepare(SegAny(**options), plane, contrast_limits, cancel_event)


def _prepare(segany: PromptSession, plane: Any, contrast_limits: Any, cancel_event: Any) -> Any:
    """Worker body: prepare ``plane`` and make it current (stops on ``cancel_event``)."""
    embedding = prepare_cancellable(segany, plane, contrast_limits, cancel_event=cancel_event)
    segany.set_image(plane, contrast_limits, embedding=embedding)
    return segany
