"""The widget's curation of Labels layers, without Qt: one history per layer.

Each Labels layer the widget writes into gets a :class:`~napari_segany.curation.Curation`
over the layer's own array (:class:`LayerCurations`), kept per layer *object* (a
renamed layer keeps its history; a deleted layer drops it). Everything written into
the layer becomes one step of its history, with undo and redo:

- the widget's edits (commit, correction, split, merge, delete, refine) run through
  the curation, which writes with the layer's ``data_setitem`` (so napari's own
  Ctrl-Z on the layer still takes them back, as before);
- writes made through napari by other parts of the widget (everything mode,
  propagation through a stack) are recorded inside :meth:`LayerCurations.recording`;
- anything else the layer's ``paint`` event reports (the brush, the fill bucket, the
  eraser) is recorded as a ``"paint"`` step as it happens.

The curation's provenance (prompts, parameters, model, image) is saved next to the
labels (:meth:`LayerCurations.save`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from napari_segany import _layers
from napari_segany.core.errors import InputError
from napari_segany.curation import Curation
from napari_segany.curation.history import PlaneChange


class LayerCurations:
    """The curations of the Labels layers the widget works on (see the module docstring)."""

    def __init__(self) -> None:
        self._by_layer: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._watched: weakref.WeakSet = weakref.WeakSet()
        self._last: Any = None  # weakref to the layer written last
        self._writing = False
        self._captured: dict[int, list] = {}

    def get(self, layer: Any) -> Curation | None:
        """The layer's curation, None before the widget wrote into it."""
        return self._by_layer.get(layer)

    def use_session(self, segany: Any) -> None:
        """Every curation goes on with ``segany`` (a model just loaded): a ``"model"``
        step where it differs, and the previous session is no longer held."""
        for curation in list(self._by_layer.values()):
            curation.use_session(segany)

    def last_layer(self) -> Any | None:
        """The Labels layer of the latest step (an edit, a stroke, an undo), if alive."""
        return None if self._last is None else self._last()

    def for_layer(self, layer: Any, image: Any, segany: Any) -> Curation:
        """The curation of ``layer`` over ``image``'s working level, made on first use.

        It follows the layer: a replaced array of the same shape (a widened dtype:
        a ``"dtype"`` step), another image (an ``"image"`` step: such a record is not
        replayed), the session's model and settings and the image's contrast limits
        (steps too); an array of another shape starts a new curation.
        """
        if not isinstance(layer.data, np.ndarray):
            raise InputError(
                f"Labels layer '{layer.name}' is not held in memory ({type(layer.data).__name__}); "
                f"curation writes into numpy labels: viewer.layers[{layer.name!r}].data = "
                "np.asarray(...) first."
            )
        level = _layers.working_level(image)[0]
        limits = _layers.contrast_of(image)
        current = self._by_layer.get(layer)
        if current is not None and current.labels.shape != layer.data.shape:
            current = None
        if current is None:
            current = Curation(segany, level, layer.data, contrast_limits=limits)
            current.writer = self._writer(layer)
            self._by_layer[layer] = current
            self._watch(layer)
        else:
            current.use_labels(layer.data)
            current.use_image(level)
        current.name = layer.name
        current.use_session(segany)
        current.use_reading(contrast_limits=limits)
        self._last = weakref.ref(layer)
        return current

    def _writer(self, layer: Any):
        """A curation writer going through ``layer.data_setitem`` (napari's undo,
        the layer's display), whose paint events are not recorded twice."""
        owner = weakref.ref(self)

        def write(index: tuple[int, ...], flat: np.ndarray, values: np.ndarray) -> None:
            yx = np.unravel_index(flat, layer.data.shape[-2:])
            coords = (*(np.full(len(flat), i) for i in index), *yx)
            me = owner()
            if me is None:
                layer.data_setitem(coords, values)
                return
            with me.writing(layer) if not me._writing else _nothing():
                layer.data_setitem(coords, values)

        return write

    def _watch(self, layer: Any) -> None:
        """Record the layer's strokes, and napari's own undo and redo of it."""
        if layer in self._watched:
            return
        self._watched.add(layer)
        owner = weakref.ref(self)
        target = weakref.ref(layer)
        _record_napari_history(layer, owner)

        def on_paint(event: Any) -> None:
            me, watched = owner(), target()
            if me is None or watched is None or me._writing:
                return
            curation = me._by_layer.get(watched)
            if curation is None:
                return
            changes = changes_from_atoms(event.value, watched.data)
            if id(watched) in me._captured:
                me._captured[id(watched)].append(changes)
            elif changes:
                curation.record_changes("paint", changes)
                me._last = target

        layer.events.paint.connect(on_paint)

    @contextmanager
    def recording(self, layer: Any, action: str, image: Any, segany: Any) -> Iterator[None]:
        """Record what napari writes into ``layer`` inside the block as one step (a
        layer not held in memory is written without a history step)."""
        try:
            curation = self.for_layer(layer, image, segany)
        except InputError:
            yield
            return
        self._captured[id(layer)] = []
        try:
            yield
        finally:
            batches = self._captured.pop(id(layer), [])
        if isinstance(layer.data, np.ndarray) and layer.data.shape == curation.labels.shape:
            curation.use_labels(layer.data)  # widened inside the block: a "dtype" step
        changes = merge_changes([c for batch in batches for c in batch], layer.data)
        if changes:
            curation.record_changes(action, changes)

    @contextmanager
    def writing(self, layer: Any) -> Iterator[None]:
        """The widget's own writes into ``layer``: one napari undo item
        (``block_history``, whose paint event comes at the end of the block), never
        recorded again as a stroke."""
        self._writing = True
        try:
            block = getattr(layer, "block_history", None)
            if block is None:
                yield
            else:
                with block():
                    yield
        finally:
            self._writing = False

    def undo(self, layer: Any) -> str:
        """Undo the latest step of ``layer``'s history; a status line."""
        return self._step(layer, "undo")

    def redo(self, layer: Any) -> str:
        """Redo the latest undone step of ``layer``'s history; a status line."""
        return self._step(layer, "redo")

    def _step(self, layer: Any, which: str) -> str:
        curation = self.get(layer)
        if curation is None:
            return f"nothing to {which} in '{layer.name}' (no edit of the widget since it opened)"
        if curation.labels is not layer.data:  # replaced (e.g. widened): same pixels
            if not isinstance(layer.data, np.ndarray) or layer.data.shape != curation.labels.shape:
                return f"nothing to {which}: '{layer.name}' holds other labels now"
            curation.use_labels(layer.data)
        self._last = weakref.ref(layer)
        with self.writing(layer):
            step = curation.undo() if which == "undo" else curation.redo()
        if step is None:
            return f"nothing to {which} in '{layer.name}'"
        done = "undid" if which == "undo" else "redid"
        return f"{done} {step.describe()} in '{layer.name}'"


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _record_napari_history(layer: Any, owner: Any) -> None:
    """Wrap the layer's ``undo``/``redo`` (what napari's Ctrl-Z and Ctrl-Shift-Z call,
    without a paint event) so their changes become steps of the layer's curation."""
    target = weakref.ref(layer)

    def wrap(method: Any, stack_name: str, undoing: bool):
        def replacement() -> None:
            watched, me = target(), owner()
            stack = getattr(watched, stack_name, None) if watched is not None else None
            atoms = list(stack[-1]) if stack else []
            method()
            curation = None if me is None or watched is None else me.get(watched)
            if curation is None or not atoms or me._writing:
                return
            if not undoing:
                atoms = atoms[::-1]  # napari keeps redo items reversed
            changes = changes_from_atoms(atoms, watched.data)
            if undoing:
                changes = [PlaneChange(c.index, c.flat, c.after, c.before) for c in changes]
            if changes:
                curation.record_changes("napari undo" if undoing else "napari redo", changes)

        return replacement

    layer.undo = wrap(layer.undo, "_undo_history", True)
    layer.redo = wrap(layer.redo, "_redo_history", False)


def _atom_pixels(atom: Any, shape: tuple[int, ...]):
    """(linear indices, old values, new values) of one napari history atom."""
    if hasattr(atom, "slice_key"):  # napari's masked paint atom
        starts = [s.start or 0 for s in atom.slice_key]
        stops = [s.stop if s.stop is not None else n for s, n in zip(atom.slice_key, shape)]
        box = tuple(b - a for a, b in zip(starts, stops))
        if atom.mask is None:
            local = np.indices(box).reshape(len(box), -1)
            old = np.asarray(atom.old_values).reshape(-1)
        else:
            local = np.array(np.nonzero(atom.mask))
            old = np.asarray(atom.old_values).reshape(-1)
        coords = tuple(local[i] + starts[i] for i in range(len(box)))
        new = np.full(len(old), atom.new_value)
    else:  # (indices, old values, new values)
        indices, old, new = atom
        coords = tuple(np.asarray(i).reshape(-1) for i in indices)
        old = np.asarray(old).reshape(-1)
        new = np.broadcast_to(np.asarray(new), old.shape).reshape(-1)
    return np.ravel_multi_index(coords, shape), old, new


def changes_from_atoms(atoms: Any, labels: np.ndarray) -> list[PlaneChange]:
    """The plane changes a napari paint event reports (its list of history atoms)."""
    pixels = [_atom_pixels(atom, labels.shape) for atom in atoms]
    if not pixels:
        return []
    linear = np.concatenate([p[0] for p in pixels])
    old = np.concatenate([p[1] for p in pixels]).astype(labels.dtype)
    new = np.concatenate([p[2] for p in pixels]).astype(labels.dtype)
    return _by_plane(linear, old, new, labels.shape)


def merge_changes(changes: list[PlaneChange], labels: np.ndarray) -> list[PlaneChange]:
    """Several changes as one: each pixel's first "before" and last "after"."""
    if not changes:
        return []
    height, width = labels.shape[-2:]
    lead = labels.shape[:-2]
    linear, old, new = [], [], []
    for change in changes:
        plane = np.ravel_multi_index(change.index, lead) if change.index else 0
        linear.append(plane * height * width + change.flat)
        old.append(change.before)
        new.append(change.after)
    return _by_plane(np.concatenate(linear), np.concatenate(old), np.concatenate(new),
                     labels.shape)  # fmt: skip


def _by_plane(linear, old, new, shape: tuple[int, ...]) -> list[PlaneChange]:
    """Per plane: each pixel's first old and last new value (unchanged pixels dropped)."""
    unique, first = np.unique(linear, return_index=True)
    _, last_reversed = np.unique(linear[::-1], return_index=True)
    last = len(linear) - 1 - last_reversed
    before, after = old[first], new[last]
    moved = before != after
    unique, before, after = unique[moved], before[moved], after[moved]
    area = shape[-2] * shape[-1]
    planes, flat = np.divmod(unique, area)
    found = []
    for plane in np.unique(planes):
        here = planes == plane
        index = tuple(int(i) for i in np.unravel_index(plane, shape[:-2])) if len(shape) > 2 else ()
        found.append(PlaneChange(index, flat[here], before[here], after[here]))
    return found


def routed_object(request: Any, target: Any) -> int | None:
    """The object of ``target`` (a Labels layer fitting the image) that ``request``'s
    prompts correct: the id under its first positive point, when it has points only."""
    if len(request.boxes) or not len(request.points_yx):
        return None
    positive = np.flatnonzero(np.asarray(request.labels) == 1)
    if not positive.size:
        return None
    y, x = (int(round(v)) for v in request.points_yx[positive[0]])
    plane = target.data[request.index] if request.index else target.data
    height, width = plane.shape[-2:]
    if not (0 <= y < height and 0 <= x < width):
        return None
    value = int(plane[y, x])
    return value or None


def correction_preview(curations: LayerCurations, request: Any, target: Any, segany: Any):
    """The preview of correcting the routed object of ``target`` (None: no object
    under the first positive point, the prompts make a new object)."""
    from napari_segany.app.prompting import Preview
    from napari_segany.core.results import SegmentResult

    obj_id = routed_object(request, target)
    if obj_id is None:
        return None
    curation = curations.for_layer(target, request.image, segany)
    mask = curation.correction_mask(obj_id, request.points_yx, request.labels, plane=request.index)
    result = SegmentResult(
        mask[None, None], np.ones((1, 1), np.float32), np.zeros((1, 1, 1, 1), np.float32)
    )
    return Preview(request, result, obj_id=obj_id)


def commit(
    curations: LayerCurations, preview: Any, target: Any, segany: Any, overwrite: bool, consent
) -> str:
    """Write ``preview`` into ``target`` through its curation (one history step, one
    napari undo item): a correction of its object, or new objects (new ids, background
    only unless ``overwrite``; a too-narrow dtype widened with ``consent``). Returns
    the status line."""
    from napari_segany.app.prompting import commit_message
    from napari_segany.app.widening import write_with_room

    request = preview.request
    if not isinstance(target.data, np.ndarray) and preview.obj_id is None:
        from napari_segany.app import prompting  # a lazy layer: written without history

        return prompting.commit(preview, target, overwrite, consent).message
    boxes = request.boxes
    points = request.points_yx if len(request.points_yx) else None
    signs = request.labels if len(request.points_yx) else None

    def write() -> list[int]:
        curation = curations.for_layer(target, request.image, segany)
        curation.name = target.name
        with curations.writing(target):
            if preview.obj_id is not None:
                mask = preview.result.masks[0, 0]  # the correction previewed
                curation.correct(preview.obj_id, points, signs, plane=request.index, mask=mask)
                return [preview.obj_id]
            box = (boxes[0] if len(boxes) == 1 else boxes) if len(boxes) else None
            return curation.add(
                points, signs, box, plane=request.index, candidate=preview.candidate,
                multimask=len(boxes) <= 1, overwrite=overwrite, result=preview.result,
            )  # fmt: skip

    ids = write_with_room(write, target, consent)
    if preview.obj_id is None:
        return commit_message(ids, target.name, request)
    words = _layers.plane_words(request.index, request.image.axis_labels)
    where = f" on {words}" if words else ""
    return f"corrected object {preview.obj_id} in '{target.name}'{where} (Undo takes it back)"
