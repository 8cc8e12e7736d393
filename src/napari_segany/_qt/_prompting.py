"""Prompt layers, the live (debounced) preview, candidate cycling and commit.

Every prediction is tied to a :class:`Request`: the image layer, the plane index and
the prompts as they were when it was made. The preview is drawn, and committed, on
*that* plane, so moving to another slice while an embedding is computed never
misplaces a result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Labels, Points, Shapes
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QObject, QTimer

from napari_segany import _layers
from napari_segany.core.errors import SegAnyError
from napari_segany.scripting import ObjectMasks, predict_objects

from ._workers import Job, embed_cancellable, notify_error

logger = logging.getLogger(__name__)
PROMPTS = "SegAny prompts"
BOXES = "SegAny boxes"
PREVIEW = "SegAny preview"
DEBOUNCE_MS = 40


@dataclass(frozen=True, eq=False)
class Request:
    """Prompts on one plane of one image layer, captured when they were read."""

    image: Any
    index: tuple[int, ...]
    plane: np.ndarray
    limits: tuple[float, float] | None
    points_yx: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray

    @property
    def signature(self) -> tuple:
        """Equal for requests that would give the same prediction."""
        arrays = (self.points_yx, self.labels, self.boxes)
        return (id(self.image), self.index, self.limits, *(a.tobytes() for a in arrays))


@dataclass
class Preview:
    """The masks predicted for ``request`` and the candidate shown (None: the best)."""

    request: Request
    objects: ObjectMasks
    candidate: int | None = None


class PromptController(QObject):
    """Keeps the preview in step with the prompts; commits it on request.

    A child QObject of the widget, so napari drops its event connections (and Qt its
    timer) when the widget is closed.
    """

    def __init__(self, widget: Any) -> None:
        super().__init__(widget)
        self.widget = widget
        self.viewer = widget.viewer
        self.preview: Preview | None = None
        self.negative = False
        self.commit_pending = False
        self._drawn: tuple[int, ...] | None = None
        self._waiting: dict[tuple, Request] = {}
        self._job: Job | None = None
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self.refresh)
        self.viewer.dims.events.current_step.connect(self.schedule)

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
        self.viewer.layers.selection.active = points  # ready for clicking
        return points, shapes

    def _add_points(self, image: Any) -> Points:
        points = self.viewer.add_points(
            np.empty((0, image.ndim)),
            name=PROMPTS,
            scale=image.scale,
            translate=image.translate,
            features={"positive": np.empty(0, dtype=bool)},
            face_color="positive",
            border_color="white",
            size=10,
            face_color_cycle={True: _layers.POSITIVE_COLOR, False: _layers.NEGATIVE_COLOR},
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

    def _request(self, image: Any) -> Request | None:
        index = _layers.plane_index(image, self.viewer.dims.point)
        plane = _layers.get_plane(image, index)
        points, shapes = self.layer(PROMPTS), self.layer(BOXES)
        points_yx, labels = np.empty((0, 2)), np.empty(0, dtype=np.int64)
        boxes = np.empty((0, 4))
        if points is not None and points.ndim == image.ndim:
            points_yx, labels = _layers.points_on_plane(points, index, image)
        if shapes is not None and shapes.ndim == image.ndim:
            boxes = _layers.boxes_on_plane(shapes, index, image)
        points_yx, labels, boxes = _layers.clip_prompts(points_yx, labels, boxes, plane.shape[:2])
        limits = _layers.contrast_of(image)
        return Request(image, index, plane, limits, points_yx, labels, boxes)

    def refresh(self) -> None:
        """Bring the preview up to date with the prompts on the shown plane."""
        session, image = self.widget.segany, self.widget.image_layer(quiet=True)
        if session is None or image is None:
            return
        request = self._request(image)
        if len(request.points_yx) == 0 and len(request.boxes) == 0:
            shown = self.preview.request if self.preview else None
            if shown is not None and shown.image is image and shown.index == request.index:
                self.clear_preview()
            self._embed_unless_cached(session, request, prefetch=True)
            return
        if self.preview is not None and self.preview.request.signature == request.signature:
            return
        if self._embed_unless_cached(session, request, prefetch=False):
            self._predict(request, session.embed(request.plane, contrast_limits=request.limits))

    def _embed_unless_cached(self, session: Any, request: Request, prefetch: bool) -> bool:
        """True if the plane is embedded; else start embedding it (at most one job)."""
        try:
            cached = session.embedding_key(request.plane, request.limits) in session.cache
            if cached and getattr(session, "snap_to_objects", False):
                # prompts snap to the head's objects: find them in the job too (zoomed
                # tiles can take seconds), not on the main thread
                cached = session.head_objects_known(request.plane, request.limits)
        except SegAnyError as error:
            notify_error(error, f"image '{request.image.name}'")
            return False
        if cached:
            return True
        key = (id(request.image), request.index)
        if not prefetch:
            self._waiting[key] = request
        if self._job is not None and not self._job.finished:
            return False
        if prefetch and not self.widget.idle():
            return False
        self.widget.show_work(True, f"embedding plane {request.index or ''} ...")
        self._job = Job(
            embed_cancellable,
            session,
            request.plane,
            request.limits,
            on_done=lambda embedding: self._embedded(key, embedding),
            on_error=self._embed_failed,
            pass_cancel_event=True,
        )
        self._job.start()
        return False

    def _embedded(self, key: tuple, embedding: Any) -> None:
        self.widget.show_work(False, "ready")
        request = self._waiting.pop(key, None)
        self._waiting.clear()
        if request is not None:
            if request.image not in self.viewer.layers:
                show_warning(
                    f"Image layer '{request.image.name}' was deleted while its plane was "
                    "embedded; nothing was changed. Pick an image layer and click again."
                )
            else:
                self._predict(request, embedding)
        self.schedule()

    def _embed_failed(self, error: BaseException) -> None:
        self._waiting.clear()
        self.commit_pending = False
        self.widget.show_work(False, notify_error(error, "Embedding failed"))

    def cancel(self) -> None:
        """Stop the embedding in progress and drop any commit waiting for it."""
        if self._job is not None:
            self._job.cancel()
        self._waiting.clear()
        self.commit_pending = False

    def _predict(self, request: Request, embedding: Any) -> None:
        session = self.widget.segany
        session.set_embedding(embedding, request.plane, request.limits)
        try:
            objects = predict_objects(session, request.points_yx, request.labels, request.boxes)
        except Exception as error:
            notify_error(error, "Prediction failed")
            return
        self.preview = Preview(request, objects)
        self._draw()
        if self.commit_pending:
            self.commit_pending = False
            self.commit_preview()

    def _draw(self) -> None:
        preview = self.preview
        layer = self._preview_layer(preview.request.image if preview else None)
        if layer is not None:
            masks = preview.objects.pick(preview.candidate) if preview else None
            index = preview.request.index if preview else ()
            _layers.show_preview(layer, index, masks, self._drawn)
            self._drawn = index if preview else None
        self._show_scores()

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
            scale=image.scale,
            translate=image.translate,
            opacity=0.5,
        )
        self._drawn = None
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        return layer

    def _show_scores(self) -> None:
        text = "no preview"
        if self.preview is not None:
            objects = self.preview.objects
            count = objects.masks.shape[1]
            if len(objects.masks) == 1 and count > 1:
                chosen = self.preview.candidate
                chosen = int(np.argmax(objects.scores[0])) if chosen is None else chosen
                text = f"candidate {chosen + 1}/{count} · score {objects.scores[0, chosen]:.2f}"
            else:
                scores = ", ".join(f"{s:.2f}" for s in objects.scores.max(axis=1))
                text = f"{len(objects.masks)} objects · scores {scores}"
        self.widget.controls.candidate_label.setText(text)
        self.viewer.text_overlay.text = f"SegAny: {text}" if self.preview else ""
        self.viewer.text_overlay.visible = self.preview is not None

    def next_candidate(self) -> None:
        """Show the next of SAM's candidate masks that is not empty (single-object
        previews); a model may leave a candidate empty (the built-in one leaves its
        third one so)."""
        if self.preview is None or self.preview.objects.masks.shape[1] < 2:
            return
        objects = self.preview.objects
        current = self.preview.candidate
        current = int(np.argmax(objects.scores[0])) if current is None else current
        count = objects.masks.shape[1]
        following = ((current + step) % count for step in range(1, count))
        self.preview.candidate = next((k for k in following if objects.masks[0, k].any()), current)
        self._draw()

    def clear_preview(self) -> None:
        """Remove the preview (the prompts stay)."""
        self.preview = None
        self._draw()

    # --- commit ---------------------------------------------------------------------
    def commit(self) -> None:
        """Commit the preview; if it is still being computed, commit it when it arrives."""
        self.timer.stop()
        self.refresh()
        if self._waiting:
            self.commit_pending = True
            self.widget.controls.status.setText("will commit when the embedding is ready ...")
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
            ids = _layers.commit_masks(
                target,
                request.index,
                self.preview.objects.pick(self.preview.candidate),
                overwrite=self.widget.controls.overwrite_box.isChecked(),
            )
        except SegAnyError as error:
            notify_error(error, "Nothing committed")
            return
        self.clear_preview()
        for name in (PROMPTS, BOXES):
            if self.layer(name) is not None:
                _layers.remove_on_plane(self.layer(name), request.index, request.image)
        written = [str(i) for i in ids if i]
        where = f" on plane {request.index}" if request.index else ""
        self.widget.controls.status.setText(
            f"committed {'objects' if len(written) > 1 else 'object'} {', '.join(written)}"
            f" into '{target.name}'{where} (Ctrl-Z on that layer undoes)"
            if written
            else "nothing committed: the mask lies on existing labels only"
        )

    def clear_prompts(self) -> None:
        """Remove the prompts of the shown plane and its preview."""
        image = self.widget.image_layer(quiet=True)
        if image is None:
            return
        index = _layers.plane_index(image, self.viewer.dims.point)
        for name in (PROMPTS, BOXES):
            if self.layer(name) is not None:
                _layers.remove_on_plane(self.layer(name), index, image)
        if self.preview is not None and self.preview.request.index == index:
            self.clear_preview()
