"""Objects through z or t: prompt once on one slice, propagate through the stack.

>>> vol = sa.open_volume(stack, axis=0)                          # doctest: +SKIP
>>> r = vol.prompt(obj_id=1, index=12, points_yx=[[140, 210]], labels=[1])  # doctest: +SKIP
>>> labels = vol.propagate()          # (Z, H, W) uint32            # doctest: +SKIP
>>> vol.prompt(obj_id=1, index=20, points_yx=[[150, 230]], labels=[0])  # doctest: +SKIP
>>> labels = vol.propagate()          # re-walks only from slice 20  # doctest: +SKIP

A SAM 2.1 model (with its checkpoint's memory parts) propagates by SAM 2.1's memory,
as Meta's video predictor does (:mod:`.volume_memory`); every other model by
projection (``core.volume``): the last slice's mask prompts the next one, until the
object ends. Slices are read and embedded one at a time, through the session's
embedding cache; of the objects, their masks (cropped to their boxes) and, with
memory, each tracked slice's memory (0.75 MiB per object and slice, by size) are kept. The
session's current plane is the last slice the volume worked on.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.errors import ImageError, InputError, PromptError
from .core.image import robust_limits
from .core.progress import Progress, drain
from .core.prompts import check_boxes, check_points
from .core.results import SegmentResult
from .core.volume.projection import ProjectionRules, projected_prompt
from .core.volume.propagation import walk
from .core.volume.tracks import SliceMask, SlicePrompt, Track, paint_slice
from .volume_memory import memory_walks

if TYPE_CHECKING:
    from .api import SegAny

__all__ = ["Volume"]

DIRECTIONS = {"both": (1, -1), "forward": (1,), "backward": (-1,)}
_LIMIT_SLICES = 8  # slices sampled for the stack's default contrast limits


class Volume:
    """A stack whose objects are segmented through one axis (z or t).

    Made by :meth:`SegAny.open_volume`; see the module docstring.

    Parameters
    ----------
    session : SegAny
    stack : array-like, (N, H, W) or (N, H, W, C) after moving ``axis`` first
        numpy, dask or zarr; read one slice at a time.
    axis : int
        The axis objects are followed along.
    contrast_limits : (low, high) or (C, 2), optional
        For every slice; default: the 0.5 / 99.5 percentiles of up to 8 slices spread
        over the stack (one mapping for the whole stack, so an object looks the same on
        every slice; uint8 data are used as they are).
    channels : sequence of int, optional
        As in :meth:`SegAny.set_image`.
    rules : ProjectionRules, optional
        When a propagated object goes on (``core.volume.projection``).
    """

    def __init__(
        self,
        session: SegAny,
        stack: Any,
        axis: int = 0,
        contrast_limits=None,
        channels: Sequence[int] | None = None,
        rules: ProjectionRules | None = None,
    ) -> None:
        ndim = len(getattr(stack, "shape", ()))
        if ndim not in (3, 4):
            raise ImageError(
                f"A volume is a (N, H, W) or (N, H, W, C) stack; got {ndim} axes. For more "
                "axes, pass one 3D part (e.g. stack[t] for one time point of a TZYX array)."
            )
        if not -ndim <= axis < ndim or (ndim == 4 and axis % ndim == 3):
            raise ImageError(f"axis {axis} is not a slice axis of a {ndim}-axis stack.")
        self._session, self._stack, self._axis = session, stack, axis % ndim
        self.n_slices = int(stack.shape[self._axis])
        self._channels = channels
        self._limits = contrast_limits
        if contrast_limits is None and np.dtype(stack.dtype) != np.uint8:
            self._limits = self._stack_limits()
        self.hw = tuple(int(v) for v in self.plane(0).shape[:2])
        self.rules = rules or ProjectionRules()
        self._tracks: dict[int, Track] = {}
        self._memory = memory_walks(self, session.predictor.model)

    @property
    def propagates_by(self) -> str:
        """``"memory"`` (SAM 2.1's video memory) or ``"projection"``."""
        return "projection" if self._memory is None else "memory"

    # --- slices ---------------------------------------------------------------------
    def plane(self, index: int) -> np.ndarray:
        """Slice ``index`` as a numpy (H, W) or (H, W, C) array."""
        index = self._check_index(index)
        return np.asarray(self._stack[(slice(None),) * self._axis + (index,)])

    def embedding(self, index: int):
        """Slice ``index``'s embedding, through the session's cache (the slice becomes
        the session's current plane)."""
        return self._session.set_image(self.plane(index), self._limits, self._channels)

    def _check_index(self, index) -> int:
        if isinstance(index, bool) or int(index) != index or not 0 <= index < self.n_slices:
            raise PromptError(
                f"Slice {index!r} is not a slice of the stack (0 to {self.n_slices - 1})."
            )
        return int(index)

    def _stack_limits(self) -> np.ndarray:
        """A plane's default limits (``core.image.robust_limits``) over up to
        :data:`_LIMIT_SLICES` slices spread through the stack, per channel."""
        picks = np.unique(np.linspace(0, self.n_slices - 1, _LIMIT_SLICES).round().astype(int))
        sample = np.stack([self.plane(int(i)) for i in picks])
        channels = (
            [sample[..., c] for c in range(sample.shape[-1])] if sample.ndim == 4 else [sample]
        )
        limits = np.array([robust_limits(channel) for channel in channels], dtype=np.float64)
        limits[:, 1] = np.maximum(limits[:, 1], limits[:, 0] + 1e-6)  # a constant stack
        return limits[0] if sample.ndim == 3 else limits

    def _segment(self, index: int, prompt: dict, multimask: bool) -> SegmentResult:
        self._session.set_image(self.plane(index), self._limits, self._channels)
        return self._session.segment(
            prompt.get("points_yx"),
            prompt.get("labels"),
            prompt.get("box_yxyx"),
            None,
            multimask,
        )

    def _predict(self, index: int, prompt: dict) -> tuple[np.ndarray, float]:
        result = self._segment(index, prompt, False)
        return result.masks[0], float(result.scores[0])

    # --- objects --------------------------------------------------------------------
    @property
    def object_ids(self) -> list[int]:
        """The ids of the objects prompted so far."""
        return sorted(self._tracks)

    def prompt(
        self,
        obj_id: int,
        index: int,
        points_yx=None,
        labels=None,
        box_yxyx=None,
        replace: bool = False,
    ) -> SegmentResult:
        """Prompt object ``obj_id`` on slice ``index``; its mask there at once.

        Prompts on a slice add up (a later call adds points; ``replace=True`` starts the
        slice over). On a slice where the object was propagated, the propagated mask
        takes part as a positive point at its most interior pixel, away from your
        negative clicks (and its box, unless you give one, where :attr:`rules` prompt
        with boxes), so a lone negative click corrects it. With memory
        (:attr:`propagates_by`), a prompt on a tracked slice is decoded on the slice's
        memory with its previous mask as the mask prompt (``.volume_memory``).

        Returns
        -------
        SegmentResult
            ``masks`` (1, H, W) bool, ``scores`` (1,), ``logits`` (1, h, w).
        """
        obj_id = _check_id(obj_id)
        index = self._check_index(index)  # the slice itself is read once, to segment
        points, point_labels = check_points(points_yx, labels, self.hw)
        boxes, _ = check_boxes(box_yxyx, self.hw)
        if boxes is not None and len(boxes) != 1:
            raise PromptError("Give one box per object (4 values: y0, x0, y1, x1).")
        track = self._tracks.get(obj_id) or Track(obj_id)
        given = _merge(None if replace else track.prompts.get(index), points, point_labels, boxes)
        if self._memory is not None:
            result = self._memory.prompt(track, index, given)
            self._anchor(track, index, given, SliceMask.of(result.masks[0], result.scores[0]))
            return result
        stored = track.masks.get(index)
        propagated = stored is not None and stored.anchor is not None
        prompt = _with_mask(given, stored.full(self.hw) if propagated else None, self.rules)
        clicks = prompt["labels"]
        single_click = prompt["box_yxyx"] is None and clicks is not None and len(clicks) == 1
        result = self._segment(index, prompt, single_click)
        best = int(np.argmax(result.scores))
        self._anchor(track, index, given, SliceMask.of(result.masks[best], result.scores[best]))
        return SegmentResult(
            result.masks[best][None], result.scores[best][None], result.logits[best][None]
        )

    def add_mask(self, obj_id: int, index: int, mask: np.ndarray, score: float = 1.0) -> None:
        """Anchor object ``obj_id`` on slice ``index`` with a mask you already have (an
        (H, W) bool array, e.g. a label you drew or committed): propagation starts from
        it as from a prompted slice; prompting that slice later starts it over."""
        obj_id = _check_id(obj_id)
        mask = np.asarray(mask)
        index = self._check_index(index)
        if mask.shape != self.hw:
            raise PromptError(f"The mask is {mask.shape}; the slices are {self.hw}.")
        if mask.dtype != bool:
            raise PromptError(f"The mask must be bool (got {mask.dtype}): e.g. labels == id.")
        track = self._tracks.get(obj_id) or Track(obj_id)
        if self._memory is not None:
            self._memory.add_mask(track, index, mask)
        self._anchor(track, index, SlicePrompt(None, None, None), SliceMask.of(mask, score))

    def _anchor(self, track: Track, index: int, given: SlicePrompt, mask: SliceMask) -> None:
        """Make slice ``index`` an anchor of ``track`` (a new version of it: its walks
        are due again)."""
        track.prompts[index] = given
        track.versions[index] = track.versions.get(index, 0) + 1
        track.masks[index] = mask
        track.stale.update({(index, 1), (index, -1)})
        self._tracks[track.obj_id] = track

    def remove(self, obj_id: int) -> None:
        """Forget object ``obj_id`` (its prompts and masks)."""
        if self._tracks.pop(_check_id(obj_id), None) is None:
            raise InputError(f"No object {obj_id} in this volume (objects: {self.object_ids}).")
        if self._memory is not None:
            self._memory.remove(obj_id)

    # --- propagation ----------------------------------------------------------------
    def propagation(
        self,
        obj_ids: Sequence[int] | None = None,
        direction: str = "both",
        max_slices: int | None = None,
    ) -> Generator[Progress, None, np.ndarray]:
        """:meth:`propagate` as a generator of :class:`Progress` (close it to cancel:
        the slices already done are kept, each stored whole); returns the labels."""
        if direction not in DIRECTIONS:
            raise InputError(f"direction must be one of {sorted(DIRECTIONS)}, got {direction!r}.")
        if max_slices is not None and (isinstance(max_slices, bool) or int(max_slices) < 1):
            raise InputError(f"max_slices must be a positive number of slices, got {max_slices!r}.")
        tracks = [self._track(i) for i in (self.object_ids if obj_ids is None else obj_ids)]
        if self._memory is not None:
            yield from self._memory.walks(tracks, DIRECTIONS[direction], max_slices)
            return self.labels
        work = [
            (track, anchor, step)
            for track in tracks
            for anchor, step in sorted(track.stale)
            if step in DIRECTIONS[direction] and anchor in track.prompts
        ]
        done, total = 0, sum(self._reach(anchor, step, max_slices) for _, anchor, step in work)
        for track, anchor, step in work:
            yield Progress(done, total, f"object {track.obj_id} from slice {anchor}")
            last = anchor
            for index in walk(
                track, anchor, step, self.n_slices, self.hw, self._predict, self.rules, max_slices
            ):
                done, last = done + 1, index
                yield Progress(done, total, f"object {track.obj_id}")
            cut = abs(last - anchor) == max_slices and self._reach(last, step) > 0
            if not cut:  # a walk cut short by max_slices stays due
                track.stale.discard((anchor, step))
        yield Progress(total, total, "propagated")
        return self.labels

    def propagate(
        self,
        obj_ids: Sequence[int] | None = None,
        direction: str = "both",
        on_progress: Callable[[Progress], object] | None = None,
        max_slices: int | None = None,
    ) -> np.ndarray:
        """Propagate the objects (default: all) from their prompted slices.

        Only what changed since the last propagation is walked again: a new or
        corrected slice re-walks outward until the result stops changing.

        Parameters
        ----------
        obj_ids : sequence of int, optional
        direction : {"both", "forward", "backward"}
            Forward is increasing slice index.
        on_progress : callable, optional
            Called with each :class:`Progress`; raise from it to cancel.
        max_slices : int, optional
            Go at most this many slices from where a walk starts (default: to the
            stack's ends). A walk cut short is due again: a later call without the
            limit goes on from where it stopped (projection) or walks again (memory).

        Returns
        -------
        numpy.ndarray, (N, H, W) uint32
            :attr:`labels`.
        """
        return drain(self.propagation(obj_ids, direction, max_slices), on_progress)

    @property
    def labels(self) -> np.ndarray:
        """(N, H, W) uint32: 0 background, each object's pixels its id; where objects
        overlap on a slice the higher-scored mask wins (a prompted slice's mask over a
        propagated one)."""
        labels = np.zeros((self.n_slices, *self.hw), np.uint32)
        tracks = list(self._tracks.values())
        for index in sorted({i for track in tracks for i in track.masks}):
            labels[index] = paint_slice(tracks, index, self.hw)
        return labels

    def object_mask(self, obj_id: int, index: int) -> np.ndarray:
        """(H, W) bool: object ``obj_id``'s own mask on slice ``index`` (before overlaps
        with other objects are resolved; all False where it was not found)."""
        stored = self._track(obj_id).masks.get(self._check_index(index))
        return np.zeros(self.hw, bool) if stored is None else stored.full(self.hw)

    def refine_labels(self, labels_zyx, ids=None, slices=None, **options) -> np.ndarray:
        """(N, H, W) labels refined slice by slice on each slice's embedding, as
        ``SegAny.refine_labels`` does on a plane (``refine_api.refine_stack``)."""
        from .refine_api import refine_stack

        return refine_stack(self._session, self, labels_zyx, ids, slices, **options)

    def _track(self, obj_id: int) -> Track:
        track = self._tracks.get(_check_id(obj_id))
        if track is None:
            raise InputError(f"No object {obj_id} in this volume (objects: {self.object_ids}).")
        return track

    def _reach(self, anchor: int, step: int, max_slices: int | None = None) -> int:
        """Slices from ``anchor`` to the stack's end in direction ``step`` (at most
        ``max_slices``)."""
        reach = self.n_slices - 1 - anchor if step > 0 else anchor
        return reach if max_slices is None else min(reach, max_slices)


def _check_id(obj_id) -> int:
    if isinstance(obj_id, bool) or int(obj_id) != obj_id or obj_id < 1:
        raise InputError(f"obj_id must be a positive integer (a label value), got {obj_id!r}.")
    return int(obj_id)


def _merge(earlier: SlicePrompt | None, points, labels, boxes) -> SlicePrompt:
    """A slice's prompt with new points added (and its box replaced when one is given)."""
    if earlier is not None and earlier.points_yx is not None and points is not None:
        points = np.concatenate([earlier.points_yx, points])
        labels = np.concatenate([earlier.labels, labels])
    elif earlier is not None and points is None:
        points, labels = earlier.points_yx, earlier.labels
    box = boxes[0] if boxes is not None else (None if earlier is None else earlier.box_yxyx)
    if points is None and box is None:
        raise PromptError("Give a point (points_yx with labels) or a box (box_yxyx).")
    return SlicePrompt(points, labels, box)


def _with_mask(given: SlicePrompt, stored: np.ndarray | None, rules: ProjectionRules) -> dict:
    """The decoder's prompt: the user's, plus (where the slice holds a propagated mask) a
    positive point inside that mask, away from the user's negative points, and, where
    the rules prompt with boxes and the user gave none, the mask's box."""
    prompt = {"points_yx": given.points_yx, "labels": given.labels, "box_yxyx": given.box_yxyx}
    if stored is None:
        return prompt
    if given.points_yx is not None:  # keep the derived point off the "not here" clicks
        stored = stored.copy()
        reach = max(3.0, 0.25 * np.sqrt(stored.sum() / np.pi))
        yy, xx = np.ogrid[: stored.shape[0], : stored.shape[1]]
        for (y, x), label in zip(given.points_yx, given.labels):
            if label == 0:
                stored &= (yy - y) ** 2 + (xx - x) ** 2 > reach**2
    if not stored.any():
        return prompt
    with_point = "point" if rules.prompt == "point" else "point_and_box"  # always a point
    derived = projected_prompt(stored, replace(rules, prompt=with_point))
    if given.points_yx is None:
        prompt["points_yx"], prompt["labels"] = derived["points_yx"], derived["labels"]
    else:
        prompt["points_yx"] = np.concatenate([derived["points_yx"], given.points_yx])
        prompt["labels"] = np.concatenate([derived["labels"], given.labels])
    if given.box_yxyx is None:  # the mask's box where the rules prompt with boxes
        prompt["box_yxyx"] = derived["box_yxyx"]
    return prompt


class VolumeMethods:
    """``SegAny.open_volume`` (mixed into ``SegAny``)."""

    def open_volume(
        self,
        stack,
        axis: int = 0,
        contrast_limits=None,
        channels: Sequence[int] | None = None,
    ):
        """A stack whose objects are prompted on one slice and propagated along
        ``axis`` (z, or t for a time lapse): :class:`~napari_segany.volume_api.Volume`.

        ``stack``: (N, H, W) or (N, H, W, C) around ``axis``, numpy, dask or zarr (read
        slice by slice); ``contrast_limits`` and ``channels`` as in :meth:`set_image`,
        for every slice (default limits: the stack's, not each slice's).
        """
        return Volume(self, stack, axis, contrast_limits, channels)
