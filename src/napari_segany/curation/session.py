"""Curate a label image with prompts: :class:`Curation`.

>>> from napari_segany import SegAny
>>> from napari_segany.curation import Curation
>>> cur = Curation(SegAny(), image, labels=cellpose_labels)        # doctest: +SKIP
>>> cur.refine()                                  # every object of plane () re-fitted
>>> new_id = cur.add(points_yx=[[40, 60]])[0]     # a missed nucleus
>>> cur.correct(7, points_yx=[[12, 30]], labels=[0])   # object 7 leaked: cut it back
>>> cur.merge([3, 4]); cur.split(9, points_yx=[[80, 81]])
>>> cur.undo(); cur.redo()
>>> cur.save("labels.tif")                        # + labels.segany.json (replayable)

Every edit is one step of an object-level :class:`~.history.LabelsHistory` (undo/redo,
changed pixels only) and one entry of :attr:`Curation.steps`, the provenance that
:func:`napari_segany.curation.replay` runs again. Rules of every write: ids of other
objects are never overwritten (an object only takes background pixels or its own,
``add(..., overwrite=True)`` aside); new objects get ids above every id seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import InputError
from . import edits
from .history import (
    DEFAULT_MAX_BYTES,
    LabelsHistory,
    PlaneChange,
    Step,
    Writer,
    direct_writer,
    plane_change,
)

__all__ = ["Curation"]


class Curation:
    """A label image (curated in place), its image, a SegAny session and the history.

    Parameters
    ----------
    segany : SegAny
        The session that segments (its model, refiners and tiling are recorded).
    image : array (..., H, W) or (..., H, W, C)
        The image; planes are read when an edit needs them (numpy, dask or zarr).
    labels : integer array (..., H, W), optional
        The labels to curate, changed in place when a writable numpy array (default:
        zeros of uint32). Any integer dtype; a 0/255 mask is an object of id 255.
    contrast_limits, channels, channel_axis
        How planes are read, as ``SegAny.set_image`` takes them (per plane).
    max_history_bytes : int
        Memory of the undo/redo history (changed pixels only).
    """

    def __init__(
        self,
        segany: Any,
        image: Any,
        labels: np.ndarray | None = None,
        *,
        contrast_limits: tuple[float, float] | None = None,
        channels: Sequence[int] | None = None,
        channel_axis: int | None = None,
        max_history_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.segany = segany
        self.image = image
        self.reading = {
            "contrast_limits": None
            if contrast_limits is None
            else tuple(float(c) for c in contrast_limits),
            "channels": None if channels is None else [int(c) for c in channels],
            "channel_axis": channel_axis,
        }
        self.initial_reading = dict(self.reading)  # what the provenance starts from
        self.labels = edits.checked_labels(labels, image)
        self.history = LabelsHistory(max_history_bytes)
        self.writer: Writer | None = None  # how pixels reach the labels (default: assign)
        self.name = "labels"  # what messages call the labels (the widget: the layer's name)
        self.steps: list[dict] = []
        self.start = edits.identity(self.labels)
        self._top = int(self.labels.max()) if self.labels.size else 0

    # -- planes ---------------------------------------------------------------------
    @property
    def lead(self) -> int:
        """Number of leading (plane-index) axes."""
        return self.labels.ndim - 2

    def plane_index(self, plane: int | Sequence[int] = ()) -> tuple[int, ...]:
        """``plane`` as a full index tuple, checked against the labels' shape."""
        index = (int(plane),) if np.isscalar(plane) else tuple(int(i) for i in plane)
        shape = self.labels.shape[: self.lead]
        if len(index) != self.lead or any(not 0 <= i < n for i, n in zip(index, shape)):
            raise InputError(
                f"plane={plane!r} is not a plane of labels shaped {self.labels.shape}; give "
                f"{self.lead} index(es) within {shape}."
            )
        return index

    def _set_plane(self, index: tuple[int, ...]) -> np.ndarray:
        """Make plane ``index`` the session's current image; return its labels view."""
        plane = self.image[index] if index else self.image
        given = {k: v for k in ("channels", "channel_axis") if (v := self.reading[k]) is not None}
        self.segany.set_image(plane, self.reading["contrast_limits"], **given)
        return self.labels[index] if index else self.labels

    def _new_ids(self, count: int) -> list[int]:
        """``count`` ids above every id seen (and above the labels' maximum now: ids
        painted by other means are never reused)."""
        self._top = max(self._top, int(self.labels.max()) if self.labels.size else 0)
        ids = list(range(self._top + 1, self._top + 1 + count))
        edits.check_room(self.labels, ids[-1] if ids else 0, self.name)
        return ids

    def _write(self, action: str, details: dict, log: dict, planes) -> Step | None:
        """Write each ``(index, new plane)`` through :attr:`writer` (changed pixels
        only), push the step to the history and its entry to :attr:`steps`."""
        changes = [
            change for index, after in planes
            if (change := plane_change(index, self._view(index), after)) is not None
        ]  # fmt: skip
        write = self._writer()
        for change in changes:
            write(change.index, change.flat, change.after)
        self.steps.append(log)
        return self.history.push(Step(action, details, changes))

    def _writer(self) -> Writer:
        return self.writer or direct_writer(self.labels)

    # -- edits ----------------------------------------------------------------------
    def add(
        self,
        points_yx: Any = None,
        labels: Any = None,
        box_yxyx: Any = None,
        *,
        plane: int | Sequence[int] = (),
        candidate: int | None = None,
        multimask: bool = True,
        overwrite: bool = False,
        result: Any = None,
    ) -> list[int]:
        """New object(s) from prompts: one per box of an (N, 4) box array, else one.

        Parameters
        ----------
        points_yx, labels, box_yxyx, multimask
            As ``SegAny.segment``.
        plane : int or tuple of int
        candidate : int, optional
            The candidate mask kept (default: each object's best-scored).
        overwrite : bool
            Write over other objects too (default: background pixels only).
        result : SegmentResult, optional
            The answer already computed for these prompts on this plane (a preview);
            not computed again.

        Returns
        -------
        list of int
            The ids written (an object with no free pixel writes nothing and is left out).
        """
        index = self.plane_index(plane)
        prompt = edits.prompt_dict(points_yx, labels, box_yxyx)
        if result is None:
            self._set_plane(index)
            result = self.segany.segment(**prompt, multimask=multimask)
        masks = result.pick(candidate)
        work = self._view(index).copy()
        written = edits.paint_new(work, masks, self._new_ids(len(masks)), overwrite)
        self._top = max([self._top, *written])
        log = {"op": "add", "plane": list(index), **edits.jsonable(prompt)}
        log.update(candidate=candidate, multimask=bool(multimask), overwrite=bool(overwrite))
        self._write("add", {"ids": written}, log, [(index, work)])
        return written

    def correct(
        self, obj_id: int, points_yx: Any, labels: Any, *, plane: int | Sequence[int] = ()
    ) -> int:
        """Re-segment object ``obj_id`` on a plane from its own prompts (its box, its
        mask, its most interior point) and the given clicks (1 = belongs, 0 = does not);
        returns the pixels changed. On a plane where the object is absent, the clicks
        alone start it there (continuing a 3D object)."""
        index = self.plane_index(plane)
        mask = self.correction_mask(obj_id, points_yx, labels, plane=index)
        edits.check_room(self.labels, int(obj_id), self.name)
        work = self._view(index).copy()
        edits.replace_object(work, int(obj_id), mask)
        self._top = max(self._top, int(obj_id))
        log = {"op": "correct", "plane": list(index), "id": int(obj_id)}
        log.update(edits.jsonable(edits.prompt_dict(points_yx, labels, None)))
        step = self._write("correct", {"id": int(obj_id)}, log, [(index, work)])
        return step.pixels if step else 0

    def correction_mask(
        self, obj_id: int, points_yx: Any, labels: Any, *, plane: int | Sequence[int] = ()
    ) -> np.ndarray:
        """The (H, W) mask :meth:`correct` would give ``obj_id`` (a preview; nothing written)."""
        index = self.plane_index(plane)
        view = self._set_plane(index)
        prompt = edits.correction_prompt(self.segany, view, int(obj_id), points_yx, labels)
        return self.segany.segment(**prompt, multimask=False).best()[0]

    def split(self, obj_id: int, points_yx: Any, *, plane: int | Sequence[int] = ()) -> int:
        """Split object ``obj_id`` at negative clicks on the part to cut off: the model
        answers the object without it (a positive point inside the object far from the
        clicks, its box, the clicks as negatives); what it leaves out gets a new id,
        returned. Raises :class:`InputError` (nothing changed) when it separates nothing."""
        index = self.plane_index(plane)
        view = self._set_plane(index)
        keep = edits.split_mask(self.segany, view, int(obj_id), points_yx)
        new_id = self._new_ids(1)[0]
        work = view.copy()
        edits.split_object(work, int(obj_id), keep, new_id)
        self._top = new_id
        log = {"op": "split", "plane": list(index), "id": int(obj_id)}
        log["points_yx"] = np.asarray(points_yx, float).reshape(-1, 2).tolist()
        self._write("split", {"ids": [int(obj_id), new_id]}, log, [(index, work)])
        return new_id

    def delete(self, ids: int | Sequence[int], *, plane: int | Sequence[int] | None = None) -> int:
        """Remove objects (on one plane, or everywhere with ``plane=None``); returns
        the pixels cleared."""
        chosen = edits.id_list(ids)
        where = self._planes(plane)
        log = {"op": "delete", "ids": chosen, "plane": None if plane is None else list(where[0])}
        planes = [(i, np.where(np.isin(self._view(i), chosen), 0, self._view(i))) for i in where]
        step = self._write("delete", {"ids": chosen}, log, planes)
        return step.pixels if step else 0

    def merge(self, ids: Sequence[int], *, plane: int | Sequence[int] | None = None) -> int:
        """Merge objects into the smallest of their ids (one plane, or everywhere);
        returns that id."""
        chosen = edits.id_list(ids)
        if len(chosen) < 2:
            raise InputError(f"merge needs two or more ids; got {chosen}.")
        target = min(chosen)
        where = self._planes(plane)
        log = {"op": "merge", "ids": chosen, "plane": None if plane is None else list(where[0])}
        planes = [
            (i, np.where(np.isin(self._view(i), chosen), target, self._view(i))) for i in where
        ]
        self._write("merge", {"ids": chosen, "id": target}, log, planes)
        return target

    def _planes(self, plane) -> list[tuple[int, ...]]:
        if plane is None:
            return [tuple(i) for i in np.ndindex(*self.labels.shape[: self.lead])]
        return [self.plane_index(plane)]

    def refine(
        self, ids: Sequence[int] | None = None, *, plane: int | Sequence[int] = (),
        split: bool = False,
    ) -> tuple:  # fmt: skip
        """``SegAny.refine_labels`` on a plane, written back as one step; returns the
        per-object outcomes (why each object changed or not)."""
        index = self.plane_index(plane)
        view = self._set_plane(index)
        chosen = None if ids is None else edits.id_list(ids)
        refined = self.segany.refine_labels(view, chosen, split=split)
        self._top = max(self._top, int(refined.max()) if refined.size else 0)
        log = {"op": "refine", "plane": list(index), "ids": chosen, "split": bool(split)}
        self._write("refine", {"ids": chosen or []}, log, [(index, refined)])
        return self.segany.last_refinement.outcomes

    def everything(self, *, plane: int | Sequence[int] = (), **params: Any) -> list[int]:
        """Everything mode on a plane (``SegAny.segment_everything(**params)``); its
        objects are written with new ids on background pixels only; returns the ids."""
        index = self.plane_index(plane)
        view = self._set_plane(index)
        found = self.segany.segment_everything(**params).labels
        present = np.unique(found[found > 0])
        masks = (found[None] == present[:, None, None]) if present.size else np.zeros(
            (0, *view.shape), bool)  # fmt: skip
        work = view.copy()
        written = edits.paint_new(work, masks, self._new_ids(len(masks)), overwrite=False)
        self._top = max([self._top, *written])
        log = {"op": "everything", "plane": list(index), "params": edits.jsonable(params)}
        self._write("everything", {"ids": written}, log, [(index, work)])
        return written

    def record_pixels(
        self, action: str, befores: Sequence[tuple[tuple[int, ...], np.ndarray]]
    ) -> Step | None:
        """Record a change made to :attr:`labels` by other means (a brush, a
        propagation, another tool): each ``(plane index, copy before)`` against what the
        plane holds now. The changed pixels go into the history and, run-length
        encoded, into the provenance (a replay writes them as they were)."""
        return self.record_changes(action, [
            change for index, before in befores
            if (change := plane_change(index, before, self._view(index))) is not None
        ])  # fmt: skip

    def record_changes(self, action: str, changes: Sequence[PlaneChange]) -> Step | None:
        """Record changes already written to :attr:`labels` (see :meth:`record_pixels`)."""
        step = self.history.push(Step(action, {}, list(changes)))
        if step is not None:
            self._top = max([self._top, *(int(c.after.max()) for c in step.changes)])
            self.steps.append({"op": "pixels", "action": action, **edits.encode_changes(changes)})
        return step

    def apply_pixels(self, action: str, record: dict) -> Step | None:
        """Write the changes of a ``"pixels"`` provenance entry and record them (replay)."""
        changes = edits.decode_changes(record, self.labels)
        write = self._writer()
        for change in changes:
            write(change.index, change.flat, change.after)
        return self.record_changes(action, changes)

    def _view(self, index: tuple[int, ...]) -> np.ndarray:
        return self.labels[index] if index else self.labels

    def use_session(self, segany: Any) -> None:
        """Go on with another session (e.g. another model): recorded as a ``"model"``
        step when its weights differ, so a replay switches where the curation did."""
        from .provenance import model_identity

        if segany is self.segany:
            return
        before, after = model_identity(self.segany), model_identity(segany)
        self.segany = segany
        if before["weights_xxh3_128"] != after["weights_xxh3_128"] or before != after:
            self.steps.append({"op": "model", "model": after})

    def use_reading(self, contrast_limits: tuple[float, float] | None) -> None:
        """Read planes with other contrast limits from now on (a ``"reading"`` step)."""
        limits = None if contrast_limits is None else tuple(float(c) for c in contrast_limits)
        if limits != self.reading["contrast_limits"]:
            self.reading["contrast_limits"] = limits
            self.steps.append({"op": "reading", "contrast_limits": limits})

    # -- history --------------------------------------------------------------------
    def undo(self) -> Step | None:
        """Take back the latest step (None when there is none)."""
        answer = self.history.undo(self.labels, self._writer())
        if answer is not None:
            self.steps.append({"op": "undo"})
        return None if answer is None else answer[0]

    def redo(self) -> Step | None:
        """Make the latest undone step again (None when there is none)."""
        answer = self.history.redo(self.labels, self._writer())
        if answer is not None:
            self.steps.append({"op": "redo"})
        return None if answer is None else answer[0]

    # -- provenance -----------------------------------------------------------------
    def provenance(self) -> dict:
        """The JSON record of this curation (``curation.provenance.build_record``)."""
        from .provenance import build_record

        return build_record(self)

    def save(self, path: Any, *, axes: str | None = None, name: str = "labels") -> Any:
        """Save the labels (TIFF or OME-Zarr, ``napari_segany.save_labels``) with the
        provenance sidecar; returns the path written."""
        from ..saving import save_labels

        return save_labels(self.labels, path, axes=axes, name=name, provenance=self.provenance())
