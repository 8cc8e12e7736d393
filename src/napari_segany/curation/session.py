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

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import InputError
from . import edits
from .history import (
    DEFAULT_MAX_BYTES,
    LabelsHistory,
    Step,
    Writer,
    direct_writer,
    plane_change,
)
from .tracking import TrackingMethods

__all__ = ["Curation"]


class Curation(TrackingMethods):
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
        from .provenance import model_identity

        self.segany = segany
        self.initial_model = model_identity(segany)  # what the provenance starts from
        self._model = self.initial_model
        self.image = image
        self.reading = {
            "contrast_limits": None
            if contrast_limits is None
            else tuple(float(c) for c in contrast_limits),
            "channels": None if channels is None else [int(c) for c in channels],
            "channel_axis": channel_axis,
        }
        self.initial_reading = dict(self.reading)  # what the provenance starts from
        self.labels = edits.checked_labels(labels, image, channel_axis)
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

    def _set_plane(self, index: tuple[int, ...], segany: Any = None) -> np.ndarray:
        """Make plane ``index`` the current image of ``segany`` (default: the
        curation's session); return its labels view (a change of the session's
        settings is recorded first)."""
        self.use_session(self.segany)
        plane = self.image[index] if index else self.image
        given = {k: v for k in ("channels", "channel_axis") if (v := self.reading[k]) is not None}
        (segany or self.segany).set_image(plane, self.reading["contrast_limits"], **given)
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
        else:
            self.use_session(self.segany)  # a settings change is recorded all the same
        masks = result.pick(candidate)
        work = self._view(index).copy()
        written = edits.paint_new(work, masks, self._new_ids, overwrite)
        self._top = max([self._top, *written])
        log = {"op": "add", "plane": list(index), **edits.jsonable(prompt)}
        log.update(candidate=None if candidate is None else int(candidate))
        log.update(multimask=bool(multimask), overwrite=bool(overwrite))
        self._write("add", {"ids": written}, log, [(index, work)])
        return written

    def correct(
        self, obj_id: int, points_yx: Any, labels: Any, *, plane: int | Sequence[int] = (),
        mask: np.ndarray | None = None,
    ) -> int:  # fmt: skip
        """Re-segment object ``obj_id`` on a plane from its own prompts (its box, its
        mask, its most interior point) and the given clicks (1 = belongs, 0 = does not);
        returns the pixels changed. On a plane where the object is absent, the clicks
        alone start it there (continuing a 3D object). ``mask``: the answer
        :meth:`correction_mask` already gave for these clicks (a preview), not decoded
        again."""
        index = self.plane_index(plane)
        if mask is None:
            mask = self.correction_mask(obj_id, points_yx, labels, plane=index)
        else:
            self.use_session(self.segany)  # a settings change is recorded all the same
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
        """Split object ``obj_id`` at clicks on the part to cut off (the widget's
        negative clicks): the model answers the part kept (a click deep in the object,
        far from the clicks) and the part clicked, each pixel goes to the nearer answer
        (``edits.split_mask``), and the part clicked gets a new id, returned. Raises
        :class:`InputError` (nothing changed) when it separates nothing."""
        return self.apply_split(self.split_answer(obj_id, points_yx, plane=plane))

    def split_answer(
        self, obj_id: int, points_yx: Any, *, plane: int | Sequence[int] = (),
        segany: Any = None,
    ) -> dict:  # fmt: skip
        """What :meth:`split` would write (nothing is written: a worker thread may
        compute it while the labels change, with ``segany`` a fork of the session,
        ``SegAny.fork``; :meth:`apply_split` writes it)."""
        index = self.plane_index(plane)
        session = segany or self.segany
        view = self._set_plane(index, session).copy()  # one snapshot of the labels
        own = view == int(obj_id)
        keep = edits.split_mask(session, view, int(obj_id), points_yx)
        clicks = np.asarray(points_yx, float).reshape(-1, 2)
        return {"index": index, "id": int(obj_id), "points_yx": clicks, "own": own, "keep": keep}

    def apply_split(self, answer: dict) -> int:
        """Write a :meth:`split_answer` as one step; returns the new id. Raises
        :class:`InputError` (nothing written) when the object's pixels changed since."""
        index, obj_id = answer["index"], answer["id"]
        view = self._view(index)
        if not np.array_equal(view == obj_id, answer["own"]):
            raise InputError(
                f"Object {obj_id} changed while its split was computed; nothing was "
                "written: split it again."
            )
        new_id = self._new_ids(1)[0]
        work = view.copy()
        edits.split_object(work, obj_id, answer["keep"], new_id)
        self._top = new_id
        log = {"op": "split", "plane": list(index), "id": obj_id}
        log["points_yx"] = answer["points_yx"].tolist()
        self._write("split", {"ids": [obj_id, new_id]}, log, [(index, work)])
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
        per-object outcomes (why each object changed or not). New ids of ``split``
        are above every id seen (in every plane)."""
        answer = self.refine_answer(ids, plane=plane, split=split)
        return self.apply_refinement(answer)

    def refine_answer(
        self, ids: Sequence[int] | None = None, *, plane: int | Sequence[int] = (),
        split: bool = False, segany: Any = None,
    ) -> dict:  # fmt: skip
        """What :meth:`refine` would write (nothing is written: a worker thread may
        compute it while the labels change, with ``segany`` a fork of the session,
        ``SegAny.fork``; :meth:`apply_refinement` writes it)."""
        index = self.plane_index(plane)
        session = segany or self.segany
        snapshot = self._set_plane(index, session).copy()
        chosen = None if ids is None else edits.id_list(ids)
        refined = session.refine_labels(snapshot, chosen, split=split)
        outcomes = session.last_refinement.outcomes
        return {"index": index, "ids": chosen, "split": bool(split), "snapshot": snapshot,
                "refined": refined, "outcomes": outcomes}  # fmt: skip

    def apply_refinement(self, answer: dict) -> tuple:
        """Write a :meth:`refine_answer` as one step: only pixels that still hold what
        the refinement read are changed; the outcomes, with their final new ids."""
        index, refined, outcomes = answer["index"], answer["refined"].copy(), answer["outcomes"]
        created = sorted({i for outcome in outcomes for i in outcome.new_ids})
        if created:
            fresh = dict(zip(created, self._new_ids(len(created))))
            lookup = np.isin(refined, created) & (answer["snapshot"] != refined)
            refined[lookup] = np.vectorize(fresh.get)(refined[lookup])
            outcomes = tuple(
                dataclasses.replace(o, new_ids=tuple(fresh[i] for i in o.new_ids))
                for o in outcomes
            )  # fmt: skip
            self._top = max(self._top, *fresh.values())
        view = self._view(index)
        after = np.where(view == answer["snapshot"], refined, view)
        log = {"op": "refine", "plane": list(index), "ids": answer["ids"], "split": answer["split"]}
        self._write("refine", {"ids": answer["ids"] or []}, log, [(index, after)])
        return outcomes

    def everything(self, *, plane: int | Sequence[int] = (), **params: Any) -> list[int]:
        """Everything mode on a plane (``SegAny.segment_everything(**params)``); its
        objects are written with new ids on background pixels only; returns the ids."""
        index = self.plane_index(plane)
        view = self._set_plane(index)
        found = self.segany.segment_everything(**params).labels
        present = np.unique(found[found > 0])
        new_ids = np.asarray(self._new_ids(len(present)), dtype=np.int64)
        lookup = np.zeros(int(present.max()) + 1 if present.size else 1, dtype=np.int64)
        lookup[present] = new_ids  # found's objects are disjoint: one id per pixel
        work = view.copy()
        free = (found > 0) & (work == 0)
        work[free] = lookup[found[free]]
        written = sorted(int(i) for i in np.unique(work[free]))
        self._top = max([self._top, *written])
        log = {"op": "everything", "plane": list(index), "params": edits.jsonable(params)}
        self._write("everything", {"ids": written}, log, [(index, work)])
        return written

    def _view(self, index: tuple[int, ...]) -> np.ndarray:
        return self.labels[index] if index else self.labels

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
