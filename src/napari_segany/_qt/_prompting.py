"""The prompt layers, the debounced live preview and commit: a view over ``app.prompting``.

The Qt side reads the prompts from the layers, runs the background preparation
(:func:`~napari_segany._qt._workers.prepare_cancellable`) and draws; the decisions (what
a request needs, candidates, commit rules) live in :mod:`napari_segany.app.prompting`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from napari.layers import Labels, Points, Shapes
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QObject, QTimer

from napari_segany import _layers
from napari_segany.app import curating, prompting
from napari_segany.app.prompting import Preview, PromptState, Request, Step
from napari_segany.core.errors import SegAnyError, WindowNotPrepared

from . import _dialogs, _keys
from ._workers import Job, notify_error, prepare_cancellable

logger = logging.getLogger(__name__)
PROMPTS = "SegAny prompts"
BOXES = "SegAny boxes"
PREVIEW = "SegAny preview"
DEBOUNCE_MS = 40
POINT_RING = 0.25  # ring width as a share of the marker's diameter


def point_size(plane_hw: tuple[int, ...]) -> float:
    """Diameter of a prompt marker in pixels of the plane: 1/60 of its short side,
    between 3 and 12 (a 256 x 256 plane: about 4, a nucleus of 20 pixels stays visible)."""
    return float(np.clip(min(plane_hw) / 60, 3, 12))


__all__ = ["BOXES", "PREVIEW", "PROMPTS", "Preview", "PromptController", "Request"]


class PromptController(QObject):
    """Keeps the preview in step with the prompts; commits it on request.

    A child QObject of the widget, so napari drops its event connections (and Qt its
    timer) when the widget is closed.
    """

    def __init__(self, widget: Any) -> None:
        super().__init__(widget)
        self.widget = widget
        self.viewer = widget.viewer
        self.state = PromptState()
        self.negative = False
        self._drawn: tuple[int, ...] | None = None
        self._job: Job | None = None
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self.refresh)
        self.viewer.dims.events.current_step.connect(self.schedule)

    @property
    def preview(self) -> Preview | None:
        """The preview shown (None: none)."""
        return self.state.preview

    @property
    def commit_pending(self) -> bool:
        """A commit waits for the plane being prepared."""
        return self.state.commit_pending

    # --- layers -----------------------------------------------------------------
    def layer(self, name: str) -> Any | None:
        """The layer called ``name`` if it is in the viewer."""
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def ensure_layers(self, image: Any) -> tuple[Points, Shapes]:
        """Create (or fit to ``image``) the prompt Points and box Shapes layers."""
        shapes = self.layer(BOXES)
        if shapes is None or shapes.ndim != image.ndim:
            if shapes is not None:
                self.viewer.layers.remove(shapes)
            shapes = self.viewer.add_shapes(
                ndim=image.ndim,
                name=BOXES,
                scale=image.scale,
                translate=image.translate,
                edge_color="yellow",
                face_color="transparent",
                edge_width=2,
            )
            shapes.events.data.connect(self.schedule)
            shapes.mode = "add_rectangle"
        points = self.layer(PROMPTS)
        if points is None or points.ndim != image.ndim:
            if points is not None:
                self.viewer.layers.remove(points)
            points = self._add_points(image)
        for layer in (points, shapes):  # rebound: a reopened widget takes them over
            _keys.bind_undo(layer, self.widget)
        self.viewer.layers.selection.active = points  # ready for clicking
        return points, shapes

    def _add_points(self, image: Any) -> Points:
        """Hollow rings coloured by polarity, small for the plane: the mask under a
        click stays visible (see :func:`point_size`)."""
        points = self.viewer.add_points(
            np.empty((0, image.ndim)),
            name=PROMPTS,
            scale=image.scale,
            translate=image.translate,
            features={"positive": np.empty(0, dtype=bool)},
            face_color="transparent",
            border_color="positive",
            border_color_cycle={True: _layers.POSITIVE_COLOR, False: _layers.NEGATIVE_COLOR},
            border_width=POINT_RING,
            border_width_is_relative=True,
            size=point_size(_layers.plane_shape(image)[-2:]),
        )
        points.feature_defaults["positive"] = not self.negative
        points.mouse_drag_callbacks.insert(0, self._polarity_from_click)
        points.events.data.connect(self.schedule)
        points.mode = "add"
        return points

    def _polarity_from_click(self, layer: Points, event: Any) -> None:
        """Shift-click adds a point of the opposite polarity (negative by default)."""
        shifted = "Shift" in event.modifiers
        layer.feature_defaults["positive"] = self.negative == shifted

    def set_negative(self, negative: bool) -> None:
        """Make the next clicked points negative (or positive again)."""
        self.negative = bool(negative)
        points = self.layer(PROMPTS)
        if points is not None:
            points.feature_defaults["positive"] = not self.negative

    # --- requests and preview ------------------------------------------------------
    def schedule(self, *_: Any) -> None:
        """Recompute the preview after a short pause (prompts or slice changed)."""
        self.timer.start()

    def _request(self, image: Any) -> Request:
        index = _layers.plane_index(image, self.viewer.dims.point)
        return prompting.read_request(image, index, self.layer(PROMPTS), self.layer(BOXES))

    def refresh(self) -> None:
        """Bring the preview up to date with the prompts on the shown plane."""
        session, image = self.widget.segany, self.widget.image_layer(quiet=True)
        if session is None or image is None:
            return
        request = self._request(image)
        try:
            region = request.region_yxyx
            ready = session.prepare(request.plane, request.limits, run=False, region_yxyx=region)
        except SegAnyError as error:
            notify_error(error, f"image '{image.name}'")
            return
        prepared = ready is not None  # (its embedding: what prepare would return now)
        step = self.state.step(request, prepared)
        if step is Step.CLEAR:
            self.clear_preview()
        if step is Step.PREDICT:
            self._predict(request, ready)
        elif step is Step.PREPARE:
            self.state.wait_for_plane(request)
            self._prepare(session, request)
        elif not request.has_prompts and not prepared and self.widget.idle():
            self._prepare(session, request)  # ahead of the first click

    def _prepare(self, session: Any, request: Request) -> None:
        """Prepare the request's plane in the background (at most one job at a time)."""
        if self._job is not None and not self._job.finished:
            return
        words = _layers.plane_words(request.index, request.image.axis_labels)
        self.widget.show_work(True, f"preparing {words or 'the image'} ...")
        self._job = Job(
            prepare_cancellable,
            session,
            request.plane,
            request.limits,
            request.region_yxyx,
            on_done=lambda embedding: self._prepared(request.key, embedding),
            on_error=self._prepare_failed,
            pass_cancel_event=True,
        )
        self._job.start()

    def _prepared(self, key: tuple, embedding: Any) -> None:
        self.widget.show_work(False, "ready")
        request = self.state.plane_prepared(key)
        if request is not None:
            if request.image not in self.viewer.layers:
                show_warning(prompting.deleted_image_message(request))
            else:
                self._predict(request, embedding)
        self.schedule()

    def _prepare_failed(self, error: BaseException) -> None:
        self.state.drop_waiting()
        self.widget.show_work(False, notify_error(error, "Preparing the plane failed"))

    def cancel(self) -> None:
        """Stop the preparation in progress and drop any commit waiting for it."""
        if self._job is not None:
            self._job.cancel()
        self.state.drop_waiting()

    def busy(self) -> bool:
        """A plane is being prepared."""
        return self._job is not None and not self._job.finished

    def _predict(self, request: Request, embedding: Any) -> None:
        try:
            preview = self._correction(request)
            if preview is None:
                preview = prompting.predict(self.widget.segany, request, embedding)
            self.state.preview = preview
        except WindowNotPrepared:  # a window of a tiled plane: embedded in the background
            self.state.wait_for_plane(request)
            self._prepare(self.widget.segany, request)
            return
        except Exception as error:
            notify_error(error, "Prediction failed")
            return
        self._draw()
        if self.state.commit_pending:
            self.state.commit_pending = False
            self.commit_preview()

    def _correction(self, request: Request) -> Preview | None:
        """The preview correcting the object under the first positive point, when the
        widget routes clicks on objects to them (curation) and the target fits."""
        if not self.widget.controls.route_box.isChecked():
            return None
        target = self.widget.curation.target()
        if target is None or tuple(target.data.shape) != _layers.plane_shape(request.image):
            return None
        session = self.widget.segany
        with session.without_embedding():  # a tiled plane's window: prepared in the job
            return curating.correction_preview(self.widget.curations, request, target, session)

    def _draw(self) -> None:
        preview = self.preview
        layer = self._preview_layer(preview.request.image if preview else None)
        if layer is not None:
            masks = preview.masks() if preview else None
            index = preview.request.index if preview else ()
            _layers.show_preview(layer, index, masks, self._drawn)
            self._drawn = index if preview else None
        text = preview.describe() if preview else "no preview"
        self.widget.controls.candidate_label.setText(text)
        self.viewer.text_overlay.text = f"SegAny: {text}" if preview else ""
        self.viewer.text_overlay.visible = preview is not None

    def _preview_layer(self, image: Any | None) -> Labels | None:
        layer = self.layer(PREVIEW)
        if image is None:
            return layer
        shape = _layers.plane_shape(image)
        if layer is not None and tuple(layer.data.shape) == shape:
            return layer
        if layer is not None:
            self.viewer.layers.remove(layer)
        active = self.viewer.layers.selection.active
        layer = self.viewer.add_labels(
            np.zeros(shape, dtype=np.uint8),
            name=PREVIEW,
            **_layers.labels_transform(image),
            opacity=0.5,
        )
        _keys.bind_undo(layer, self.widget)
        self._drawn = None
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        return layer

    def next_candidate(self) -> None:
        """Show the next non-empty candidate mask (single-object previews)."""
        if self.preview is not None:
            self.preview.next_candidate()
            self._draw()

    def clear_preview(self) -> None:
        """Remove the preview (the prompts stay)."""
        self.state.preview = None
        self._draw()

    # --- commit ---------------------------------------------------------------------
    def commit(self) -> None:
        """Commit the preview; if it is still being computed, commit it when it arrives."""
        self.timer.stop()
        self.refresh()
        if self.state.waiting:
            self.state.commit_pending = True
            self.widget.controls.status.setText("will commit when the plane is prepared ...")
            return
        if self.preview is None:
            show_info("Nothing to commit: click on an object (Points layer) or draw a box.")
            return
        self.commit_preview()

    def commit_preview(self) -> None:
        """Write the shown masks into the target Labels layer, on the preview's plane."""
        request = self.preview.request
        if request.image not in self.viewer.layers:
            show_warning(f"Image layer '{request.image.name}' was deleted; preview dropped.")
            self.clear_preview()
            return
        try:
            target = self.widget.target_labels(request.image)
            overwrite = self.widget.controls.overwrite_box.isChecked()
            consent = _dialogs.consent_from(self.widget)
            segany = self.widget.segany
            text = curating.commit(
                self.widget.curations, self.preview, target, segany, overwrite, consent
            )
        except SegAnyError as error:
            notify_error(error, "Nothing committed")
            return
        self.clear_preview()
        self._remove_prompts(request.index, request.image)
        self.widget.controls.status.setText(text)

    def _remove_prompts(self, index: tuple[int, ...], image: Any) -> None:
        for name in (PROMPTS, BOXES):
            if self.layer(name) is not None:
                _layers.remove_on_plane(self.layer(name), index, image)

    def clear_prompts(self) -> None:
        """Remove the prompts of the shown plane and its preview."""
        image = self.widget.image_layer(quiet=True)
        if image is None:
            return
        index = _layers.plane_index(image, self.viewer.dims.point)
        self._remove_prompts(index, image)
        if self.state.clear_on_plane(index):
            self._draw()
