"""Refine existing labels with prompts, on a session's current plane or a stack.

>>> sa.set_image(plane)                                           # doctest: +SKIP
>>> better = sa.refine_labels(labels)            # same ids, same dtype, a new array
>>> sa.last_refinement.outcomes[0]                                # doctest: +SKIP
ObjectOutcome(obj_id=1, accepted=True, score=0.93, iou_with_input=0.71, reason='refined')

Each object (or each of ``ids``) is decoded again from its own box, its mask as
``mask_input`` and a point at its most interior pixel, in batches; an answer replaces
the object only when the model is confident, still designates the same object and
moves its boundary by more than its own noise; other ids are never touched. The rules
and the write-back: :mod:`napari_segany.core.refine_labels`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .core import planes
from .core.errors import InputError, NoImageError
from .core.label_inputs import check_ids, check_labels
from .core.labels import check_label_room
from .core.mask_prompts import MaskFrame, decode_objects
from .core.plugins import PlaneContext, Prompt, PromptRefiner
from .core.predictor import Predictor
from .core.refine_labels import (
    ObjectOutcome,
    Refinement,
    RefineRules,
    grown_boxes,
    refine_label_plane,
)
from .core.results import SegmentResult
from .core.tiling import Window, clipped_region, prompt_region, window_for

__all__ = ["ObjectOutcome", "RefineMethods", "RefineRules", "Refinement", "refine_stack"]


class RefineMethods:
    """``SegAny.refine_labels`` (mixed into ``SegAny``).

    Attributes
    ----------
    refine_rules : RefineRules
        Prompts and acceptance thresholds used by :meth:`refine_labels` (may be
        replaced, e.g. ``sa.refine_rules = RefineRules(min_score=0.7)``).
    separate_merged : bool
        Also find objects that are two under one id (a merged pair) and keep them to one
        (``core.merged``: each object probed by one click; default True).
    last_refinement : Refinement or None
        The last call's labels and per-object :class:`ObjectOutcome` (why each object
        was or was not changed).
    """

    predictor: Predictor
    refiners: tuple[PromptRefiner, ...]
    _current: PlaneContext | None
    _big: Any = None  # TilingMethods' tiled plane
    _use_window: Callable[..., None]  # TilingMethods': a window made the current plane
    refine_rules: RefineRules = RefineRules()
    separate_merged: bool = True
    last_refinement: Refinement | None = None

    def refine_labels(
        self,
        labels: np.ndarray,
        ids: Sequence[int] | None = None,
        *,
        split: bool = False,
        multimask: bool = False,
    ) -> np.ndarray:
        """Re-segment the objects of a label plane of the current plane.

        Parameters
        ----------
        labels : array-like, (H, W) integer or bool
            The current plane's labels from any source (uint8 0/255 masks included);
            not modified.
        ids : sequence of int, optional
            The objects to refine (default: every non-zero id); others are never
            touched.
        split : bool
            Parts an object loses that are large (a merged neighbour) get new ids
            instead of becoming background.
        multimask : bool
            Decode three candidates per object and keep the best-scored one (default:
            SAM's single mask, meant for unambiguous prompts).

        Returns
        -------
        numpy.ndarray, (H, W)
            New labels, same dtype; outcomes in :attr:`last_refinement`.

        Raises
        ------
        NoImageError
            Before ``set_image``.
        InputError
            On labels that are not integers, not of the plane's shape, unknown ids, or
            new ids (``split``) the dtype cannot hold (``LabelsDtypeError``); nothing
            changes.

        Notes
        -----
        On a tiled plane (:attr:`tiled`) each object is refined in the window holding
        its prompts, as on that window alone: window after window, each on the labels
        as the windows before left them.
        """
        refinement = self._refine_current(labels, ids, split, multimask)
        self.last_refinement = refinement
        return refinement.labels

    def _refine_current(self, labels, ids, split: bool, multimask: bool) -> Refinement:
        """:meth:`refine_labels` on the current plane, as a :class:`Refinement`."""
        if self._big is not None:
            return self._refine_tiled(labels, ids, split, multimask)
        context = self._current
        if context is None:
            raise NoImageError("No image set: call set_image(plane) before refine_labels(...).")
        array = check_labels(labels, context.hw)
        _check_split(array, split)
        check_ids(array, ids)
        return self._refine_plane(array, ids, split, multimask)

    def _refine_tiled(self, labels, ids, split: bool, multimask: bool) -> Refinement:
        """:meth:`refine_labels` on a tiled plane: each object in the window holding its
        prompts (``core.tiling.window_for``: the grid window with the widest margin, or
        one around the object), window after window on the labels as refined so far;
        the new ids of ``split`` above every id of the plane."""
        big = self._big
        array = check_labels(labels, big.hw)
        _check_split(array, split)
        wanted = check_ids(array, ids)
        work = array.copy()
        top = int(array.max()) if array.size else 0
        outcomes: list[ObjectOutcome] = []
        for window, group in _by_window(array, wanted, self.refine_rules, big):
            self._use_window(window)
            before = work[window.slices]
            found, top = _renumbered(
                before, self._refine_plane(before, group, split, multimask), top
            )
            work[window.slices] = found.labels
            outcomes.extend(found.outcomes)
        return Refinement(work, tuple(sorted(outcomes, key=lambda o: o.obj_id)))

    def _refine_plane(self, array, ids, split: bool, multimask: bool) -> Refinement:
        """Refine ``ids`` of checked labels of the current plane (seen in one pass)."""
        context = self._current
        planes.prepare(context, self.refiners)
        model = self.predictor.model
        frame = MaskFrame.of(context.embedding, model.image_size, model.square_frame)

        def decode(points_yx, boxes_yxyx, mask_input) -> SegmentResult:
            result = decode_objects(
                self.predictor, context.embedding, points_yx, boxes_yxyx, mask_input, multimask
            )
            return self._with_refiners(result, points_yx, boxes_yxyx, mask_input, multimask)

        def probe(points_yx):
            result = decode_objects(
                self.predictor, context.embedding, points_yx, None, None, multimask=True
            )
            result = self._with_refiners(result, points_yx, None, None, True)
            best = np.argmax(result.scores, axis=1)
            rows = np.arange(len(best))
            return result.masks[rows, best], result.scores[rows, best]

        return refine_label_plane(
            array,
            ids,
            decode,
            frame,
            self.refine_rules,
            split,
            probe if self.separate_merged else None,
        )

    def _with_refiners(self, result, points_yx, boxes_yxyx, mask_input, multimask):
        """Each object's answer through the session's prompt refiners, as
        :meth:`segment` would give it for that object's prompts alone."""
        if not self.refiners:
            return result
        masks = result.masks.copy()
        for index in range(len(masks)):
            one = SegmentResult(masks[index], result.scores[index], result.logits[index])
            prompt = Prompt(
                points_yx[index], np.ones(1, np.int64),
                None if boxes_yxyx is None else boxes_yxyx[index],
                None if mask_input is None else mask_input[index], bool(multimask),
            )  # fmt: skip
            for refiner in self.refiners:
                one = refiner.refine(one, prompt, self._current)
            masks[index] = one.masks
        return result.with_masks(masks)


def _check_split(array: np.ndarray, split: bool) -> None:
    if split and array.dtype == bool:
        raise InputError(
            "split needs integer labels to give new ids; pass labels.astype(np.uint16)."
        )


def _by_window(labels: np.ndarray, ids: list[int], rules: RefineRules, big) -> list[tuple]:
    """``(window, ids)`` pairs: the objects ``ids`` of a tiled plane's labels grouped by
    the window holding each one's prompts (grid windows in grid order, then windows
    of their own)."""
    groups: dict[Window, list[int]] = {}
    for obj_id, box in zip(ids, grown_boxes(labels, ids, rules)):  # (the box holds the point)
        region = prompt_region(None, np.asarray(box))
        window = window_for(clipped_region(region, big.hw), big.windows, big.hw, big.tiling)
        groups.setdefault(window, []).append(obj_id)
    order = {window: rank for rank, window in enumerate(big.windows)}
    return sorted(groups.items(), key=lambda item: (order.get(item[0], len(order)), item[0].yxyx))


def _renumbered(before: np.ndarray, refinement: Refinement, top: int) -> tuple[Refinement, int]:
    """``refinement`` (of the labels ``before``) with the new ids its split parts got
    moved to ``top + 1, top + 2, ...`` in one pass (no id moved twice), and the new top.

    Raises
    ------
    LabelsDtypeError
        When the dtype cannot hold them.
    """
    created = np.array(sorted({i for o in refinement.outcomes for i in o.new_ids}), np.int64)
    if not created.size:
        return refinement, top
    check_label_room(before.dtype, top + len(created), "labels")
    labels = refinement.labels.copy()
    moved = np.isin(labels, created) & (labels != before)
    labels[moved] = top + 1 + np.searchsorted(created, labels[moved])
    fresh = {int(old): top + rank for rank, old in enumerate(created, start=1)}
    outcomes = tuple(
        dataclasses.replace(o, new_ids=tuple(fresh[i] for i in o.new_ids))
        for o in refinement.outcomes
    )  # fmt: skip
    return Refinement(labels, outcomes), top + len(created)


def refine_stack(session, volume, labels_zyx, ids=None, slices=None, **options) -> np.ndarray:
    """:meth:`Volume.refine_labels`: each slice's labels refined on its embedding.

    Parameters
    ----------
    session : SegAny
        The volume's session.
    volume : Volume
    labels_zyx : array-like, (N, H, W) integer
        One label plane per slice of the volume; not modified.
    ids : sequence of int, optional
        The objects to refine, on the slices where they are (default: all).
    slices : sequence of int, optional
        The slices to refine (default: every slice holding an object).
    options
        ``split``, ``multimask``: as in :meth:`SegAny.refine_labels`.

    Returns
    -------
    numpy.ndarray, (N, H, W)
        New labels, same dtype; the session's :attr:`~RefineMethods.last_refinement` is
        the last slice's.
    """
    array = np.asarray(labels_zyx)
    if array.shape[:1] != (volume.n_slices,) or array.ndim != 3:
        raise InputError(
            f"The labels are {array.shape}; the volume needs ({volume.n_slices}, "
            f"{volume.hw[0]}, {volume.hw[1]}): one label plane per slice."
        )
    check_labels(array[0], volume.hw)
    wanted = None if ids is None else {int(v) for v in np.atleast_1d(ids)}
    chosen = range(volume.n_slices) if slices is None else [int(i) for i in slices]
    if any(not 0 <= index < volume.n_slices for index in chosen):
        raise InputError(f"slices must lie in 0 .. {volume.n_slices - 1}, got {list(slices)}.")
    refined = array.copy()
    top = int(array.max()) if array.size else 0  # split's new ids: above every slice's
    for index in chosen:
        present = {int(v) for v in np.unique(array[index]) if v != 0}
        todo = present if wanted is None else present & wanted
        if not todo:
            continue
        volume.embedding(index)  # the slice becomes the session's current plane
        session.refine_labels(array[index], sorted(todo), **options)
        found, top = _renumbered(array[index], session.last_refinement, top)
        session.last_refinement = found
        refined[index] = found.labels
    return refined
