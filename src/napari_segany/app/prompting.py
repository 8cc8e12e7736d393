"""Prompting without Qt: requests, the preview and its candidates, commit rules.

Every prediction is tied to a :class:`Request`: the image layer, the plane index and
the prompts as they were when it was read. The preview is drawn, and committed, on
*that* plane, so moving to another slice while a plane is prepared never misplaces a
result. Planes are prepared (embedded, plus the model's per-plane work) only in the
background: :meth:`PromptState.step` says when a request can be answered at once and
when it must wait for :meth:`PromptSession.prepare` in a worker.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_segany import _layers
from napari_segany.core.progress import Progress
from napari_segany.core.results import SegmentResult
from napari_segany.core.tiling import prompt_region
from napari_segany.scripting import predict_objects

from .sessions import PromptSession
from .widening import Consent, write_with_room

PlaneKey = tuple[int, tuple[int, ...]]  # (id of the image layer, plane index)


@dataclass(frozen=True, eq=False)
class Request:
    """Prompts on one plane of one image layer, captured when they were read.

    Attributes
    ----------
    image : napari.layers.Image
    index : tuple of int
        Plane index (``()`` for a 2D image).
    plane : numpy.ndarray, (H, W) or (H, W, C)
    limits : (float, float) or None
        Contrast limits the model sees the plane with.
    points_yx : numpy.ndarray, (P, 2) float64, row/col pixels of the plane
    labels : numpy.ndarray, (P,) int64, 1 positive, 0 negative
    boxes : numpy.ndarray, (N, 4) float64, (y0, x0, y1, x1)
    """

    image: Any
    index: tuple[int, ...]
    plane: np.ndarray
    limits: tuple[float, float] | None
    points_yx: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray

    @property
    def region_yxyx(self) -> tuple[int, int, int, int] | None:
        """(y0, x0, y1, x1) around the prompts as the session's ``segment`` takes it
        (``core.tiling.prompt_region``), or None without any (a plane seen window by
        window prepares the window holding them)."""
        if not len(self.points_yx) and not len(self.boxes):
            return None
        return prompt_region(self.points_yx, self.boxes)

    @property
    def signature(self) -> tuple:
        """Equal for requests that would give the same prediction."""
        arrays = (self.points_yx, self.labels, self.boxes)
        return (id(self.image), self.index, self.limits, *(a.tobytes() for a in arrays))

    @property
    def key(self) -> PlaneKey:
        """The plane this request is about (image layer and plane index)."""
        return (id(self.image), self.index)

    @property
    def has_prompts(self) -> bool:
        """Whether there is at least one point or box."""
        return len(self.points_yx) > 0 or len(self.boxes) > 0


def read_request(image: Any, index: tuple[int, ...], points: Any, shapes: Any) -> Request:
    """The prompts of ``points`` / ``shapes`` (layers or None) on plane ``index`` of
    ``image``, in the image's pixels, clipped to the plane."""
    plane = _layers.get_plane(image, index)
    points_yx, labels = np.empty((0, 2)), np.empty(0, dtype=np.int64)
    boxes = np.empty((0, 4))
    if points is not None and points.ndim == image.ndim:
        points_yx, labels = _layers.points_on_plane(points, index, image)
    if shapes is not None and shapes.ndim == image.ndim:
        boxes = _layers.boxes_on_plane(shapes, index, image)
    points_yx, labels, boxes = _layers.clip_prompts(points_yx, labels, boxes, plane.shape[:2])
    return Request(image, index, plane, _layers.contrast_of(image), points_yx, labels, boxes)


@dataclass
class Preview:
    """The masks predicted for ``request`` and the candidate shown (None: the best).

    Attributes
    ----------
    request : Request
    result : SegmentResult
        With the leading N (objects) axis: masks (N, K, H, W).
    candidate : int or None
    obj_id : int or None
        The object of the target layer the prompts correct (curation: a click inside
        an existing object); None: the prompts make new objects.
    """

    request: Request
    result: SegmentResult
    candidate: int | None = None
    obj_id: int | None = None

    @property
    def single(self) -> bool:
        """One object with several candidates (the candidates can be cycled)."""
        return len(self.result.masks) == 1 and self.result.masks.shape[1] > 1

    def shown(self) -> int:
        """The candidate shown (the best-scored one unless chosen)."""
        if self.candidate is not None:
            return self.candidate
        return int(np.argmax(self.result.scores[0]))

    def masks(self) -> np.ndarray:
        """(N, H, W) bool: the masks shown (and committed)."""
        return self.result.pick(self.candidate)

    def next_candidate(self) -> None:
        """Show the next candidate that is not empty (single-object previews only; a
        model may leave a candidate empty)."""
        if not self.single:
            return
        masks, current = self.result.masks, self.shown()
        count = masks.shape[1]
        following = ((current + step) % count for step in range(1, count))
        self.candidate = next((k for k in following if masks[0, k].any()), current)

    def describe(self) -> str:
        """``"candidate 2/3 · score 0.90"``, ``"2 objects · scores 0.80, 0.80"`` or
        ``"correcting object 7"``."""
        if self.obj_id is not None:
            return f"correcting object {self.obj_id}"
        scores = self.result.scores
        if self.single:
            chosen = self.shown()
            return f"candidate {chosen + 1}/{scores.shape[1]} · score {scores[0, chosen]:.2f}"
        listed = ", ".join(f"{s:.2f}" for s in scores.max(axis=1))
        return f"{len(scores)} objects · scores {listed}"


def predict(session: PromptSession, request: Request, embedding: Any) -> Preview:
    """Segment ``request`` on its prepared plane (fast: the decoder and the refiners).

    Nothing is embedded here (the caller's thread is the GUI's): a prompt on a plane
    seen window by window that needs a window not prepared raises
    ``WindowNotPrepared``; prepare the request's region in the background, then call
    again.

    Raises
    ------
    SegAnyError
        On an invalid prompt or plane (``WindowNotPrepared``: see above).
    """
    with session.without_embedding():
        session.set_image(request.plane, request.limits, embedding=embedding)
        result = predict_objects(session, request.points_yx, request.labels, request.boxes)
    return Preview(request, result.per_object())


class Step(enum.Enum):
    """What to do with a request (:meth:`PromptState.step`)."""

    NOTHING = "nothing"  # the preview already answers it
    CLEAR = "clear"  # no prompts on the shown plane: drop its preview
    PREDICT = "predict"  # the plane is prepared: predict now
    PREPARE = "prepare"  # prepare the plane in the background, then predict


@dataclass
class PromptState:
    """The preview and the requests waiting for their plane to be prepared.

    Attributes
    ----------
    preview : Preview or None
    commit_pending : bool
        Commit the preview as soon as the waiting request is answered.
    waiting : dict
        Plane key -> the latest request waiting for that plane.
    """

    preview: Preview | None = None
    commit_pending: bool = False
    waiting: dict[PlaneKey, Request] = field(default_factory=dict)

    def step(self, request: Request, prepared: bool) -> Step:
        """What ``request`` needs, given whether its plane is prepared."""
        if not request.has_prompts:
            shown = self.preview.request if self.preview else None
            same = shown is not None and shown.key == request.key
            return Step.CLEAR if same else Step.NOTHING
        if self.preview is not None and self.preview.request.signature == request.signature:
            return Step.NOTHING
        return Step.PREDICT if prepared else Step.PREPARE

    def wait_for_plane(self, request: Request) -> None:
        """Keep ``request`` to answer once its plane is prepared."""
        self.waiting[request.key] = request

    def plane_prepared(self, key: PlaneKey) -> Request | None:
        """The request waiting for plane ``key`` (None); every other wait is dropped
        (the views read the prompts again after each prepared plane)."""
        request = self.waiting.pop(key, None)
        self.waiting.clear()
        return request

    def drop_waiting(self) -> None:
        """Forget the waiting requests and any pending commit (cancel, failure)."""
        self.waiting.clear()
        self.commit_pending = False

    def clear_on_plane(self, index: tuple[int, ...]) -> bool:
        """Drop the preview if it is on plane ``index``; True when it was."""
        if self.preview is not None and self.preview.request.index == index:
            self.preview = None
            return True
        return False


def deleted_image_message(request: Request, what: str = "its plane was prepared") -> str:
    """The notification when the image layer of ``request`` was removed meanwhile."""
    return (
        f"Image layer '{request.image.name}' was deleted while {what}; nothing was "
        "changed. Pick an image layer and click again."
    )


@dataclass(frozen=True)
class Committed:
    """What a commit wrote: the ids (0: an object without free pixels) and a status."""

    ids: list[int]
    message: str


def commit(
    preview: Preview, target: Any, overwrite: bool, consent: Consent | None = None
) -> Committed:
    """Write the shown masks into ``target`` (a Labels layer) on the preview's plane.

    Each object gets a new id; only background pixels are written unless
    ``overwrite`` (one undo step).

    Parameters
    ----------
    consent : callable, optional
        Asked when ``target``'s dtype cannot hold the new ids (see
        :func:`.widening.write_with_room`); None: never widen.

    Raises
    ------
    InputError
        ``target`` does not fit the plane (nothing is written).
    LabelsDtypeError
        ``target``'s dtype cannot hold the new ids and was not widened (nothing written).
    """
    index = preview.request.index
    ids = write_with_room(
        lambda: _layers.commit_masks(target, index, preview.masks(), overwrite=overwrite),
        target,
        consent,
    )
    undo = "Ctrl-Z or Undo commit takes it back"
    return Committed(ids, commit_message(ids, target.name, preview.request, undo))


def commit_message(
    ids: Sequence[int], target_name: str, request: Request, undo: str = "Undo takes it back"
) -> str:
    """The status line of a commit of ``ids`` (0: an object that wrote nothing)."""
    written = [str(i) for i in ids if i]
    words = _layers.plane_words(request.index, request.image.axis_labels)
    where = f" on {words}" if words else ""
    if not written:
        return "nothing committed: the mask lies on existing labels only"
    noun = "objects" if len(written) > 1 else "object"
    return f"committed {noun} {', '.join(written)} into '{target_name}'{where} ({undo})"


def prepare_planes(
    session: PromptSession, image: Any, indices: Sequence[tuple[int, ...]] | None = None
) -> Generator[Progress, None, tuple[int, int]]:
    """Worker body: prepare the planes of ``image`` (all by default), so prompts on any
    of them answer at once.

    Returns
    -------
    (int, int)
        Planes prepared, and how many of them are still prepared at the end (fewer
        when the session's cache could not keep them all).
    """
    lead = _layers.plane_shape(image)[:-2]
    todo = list(indices) if indices is not None else list(np.ndindex(*lead))
    limits = _layers.contrast_of(image)
    for done, index in enumerate(todo):
        words = _layers.plane_words(tuple(index), image.axis_labels)
        yield Progress(done, len(todo), f"preparing {words or 'the image'}")
        session.prepare(_layers.get_plane(image, tuple(index)), limits)
    yield Progress(len(todo), len(todo), "all planes prepared")
    kept = sum(
        session.prepare(_layers.get_plane(image, tuple(i)), limits, run=False) is not None
        for i in todo
    )
    return len(todo), kept
