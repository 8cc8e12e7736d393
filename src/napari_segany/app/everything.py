"""An everything-mode run without Qt: decode in a worker, select again, write labels.

A run decodes one plane, or every plane, of an image layer with the session's
proposer (the expensive phase, with the model; :func:`decode_run`, the worker body,
uses ``core.everything.run_planes``, the one stack loop) and keeps each plane's
candidates. :func:`reselect` applies other thresholds or *link* to them without the
model. The labels go into a Labels layer (:class:`Targets`): a layer of the run's own,
``SegAny everything`` (one per image, reused, whose planes a run replaces), or the
user's, where only background pixels are written unless *overwrite*; a plane the user
edited since the run wrote it is never rewritten (:func:`write`).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from napari_segany import _layers
from napari_segany.core.cancel import image_encoder_of, stop_on
from napari_segany.core.everything import FilterParams, PlaneSelection, run_planes, select_planes
from napari_segany.core.progress import Progress

from .sessions import EverythingSession
from .widening import Consent, write_with_room

EVERYTHING = "SegAny everything"
GRID = "grid"  # SAM's point grid, offered for every model (its points per side)
ZOOM = "head_zoom"  # a proposer's zoom parameter (0: chosen per plane)
FILTER_NAMES = tuple(f.name for f in fields(FilterParams))
PlaneIndex = tuple[int, ...]


@dataclass(eq=False)
class Run:
    """One everything-mode run: where it came from, its candidates, where it was written.

    Attributes
    ----------
    image : napari.layers.Image
    indices : list of tuple of int
        The planes of the run, in C order.
    candidates : dict
        Plane index -> candidates (phase 1), kept to select again.
    stack : bool
        Whole stack (objects may be linked across planes).
    target : napari.layers.Labels or None
        Where the labels are written (set by :meth:`Run.aim`).
    own : bool
        The target is an everything layer (whole planes replaced).
    offset : int
        Added to the run's ids (unique in the target).
    overwrite : bool
    bases : dict
        Plane index -> the user's labels the run writes over (None: replaced).
    written : dict
        Plane index -> the plane as last written (to detect the user's edits).
    """

    image: Any
    indices: list[PlaneIndex]
    candidates: dict
    stack: bool
    target: Any = None
    own: bool = True
    offset: int = 0
    overwrite: bool = False
    bases: dict = field(default_factory=dict)
    written: dict = field(default_factory=dict)

    def aim(self, target: Any, own: bool, overwrite: bool) -> None:
        """Write into ``target`` from now on (its ids and labels as they are now)."""
        self.target, self.own, self.overwrite = target, own, overwrite
        if own:
            self.bases = dict.fromkeys(self.indices)
            self.offset = _layers.free_id_outside(target, self.indices)
        else:
            self.bases = {i: plane_of(target, i).copy() for i in self.indices}
            self.offset = int(np.max(target.data, initial=0))


def plane_of(layer: Any, index: PlaneIndex) -> np.ndarray:
    """Plane ``index`` of a layer's data, as numpy."""
    return np.asarray(layer.data[index] if index else layer.data)


def run_indices(image: Any, shown: PlaneIndex, stack: bool) -> list[PlaneIndex]:
    """The planes a run covers: every plane of ``image`` (``stack``) or the shown one."""
    if not stack:
        return [shown]
    lead = _layers.plane_shape(image)[:-2]
    return [tuple(int(i) for i in ix) for ix in np.ndindex(*lead)]


def run_words(image: Any, indices: Sequence[PlaneIndex], stack: bool) -> str:
    """What a run covers, for status lines: ``"the image"`` (2D), ``"plane z=3"``,
    ``"12 planes"``."""
    if stack:
        return f"{len(indices)} planes"
    words = _layers.plane_words(indices[0], image.axis_labels)
    return words or "the image"


def filters_for(session: EverythingSession, values: dict, mode: str = "auto") -> FilterParams:
    """Phase 2's parameters: ``values`` (the panel's), ``mode``'s defaults for the rest.

    Raises
    ------
    InputError
        On an invalid value.
    """
    merged = {**session.everything.mode_defaults(mode), **values}
    return FilterParams(**{name: merged[name] for name in FILTER_NAMES if name in merged})


def decode_run(
    session: EverythingSession,
    image: Any,
    indices: Sequence[PlaneIndex],
    contrast_limits: Any,
    mode: str,
    params: dict,
    filters: FilterParams,
    link: bool,
    cancel_event: threading.Event,
) -> Generator[Progress, None, PlaneSelection]:
    """Worker body of a run: phase 1 on each plane, then the selection.

    Parameters
    ----------
    session : EverythingSession
    image : napari.layers.Image
        Planes are read from it here, in the worker, as the loop reaches them.
    indices : sequence of tuple of int
        Plane indices (``[()]`` for a 2D image), in C order.
    contrast_limits : (float, float) or None
    mode : str
        The proposer (``session.everything.names()``).
    params : dict
        Phase 1's parameters (those of other proposers are accepted and ignored).
    filters : FilterParams
    link : bool
        Link objects along the last plane axis.
    cancel_event : threading.Event
        Set to stop (within one encoder block or one progress step).

    Returns
    -------
    PlaneSelection
        With every plane's candidates (``keep_candidates``).

    Raises
    ------
    CancelledError
        When ``cancel_event`` is set.
    InputError
        On an unknown mode or parameter.
    """

    def decode(plane: np.ndarray):
        return session.decode_everything(plane, contrast_limits, None, mode, **params)

    planes = ((index, _layers.get_plane(image, index)) for index in indices)
    with stop_on(image_encoder_of(session), cancel_event):
        return (
            yield from run_planes(
                decode,
                planes,
                len(indices),
                filters,
                link,
                keep_candidates=True,
                cancel_event=cancel_event,
            )
        )


def reselect(run: Run, filters: FilterParams, link: bool) -> PlaneSelection:
    """Phase 2 again on the run's candidates (no model); ``link`` only for stacks."""
    return select_planes(run.candidates, filters, run.stack and link)


def edited_planes(run: Run) -> list[PlaneIndex]:
    """Planes of the target changed since the run last wrote them."""
    return [
        i for i, plane in run.written.items() if not np.array_equal(plane_of(run.target, i), plane)
    ]


def edited_message(run: Run, edited: list[PlaneIndex]) -> str:
    """The notification when the thresholds cannot be applied (the user edited planes)."""
    return (
        f"'{run.target.name}' was edited since everything mode wrote it (planes "
        f"{edited[:3]}); the new thresholds were not applied. Run it again."
    )


def write(run: Run, selection: PlaneSelection, consent: Consent | None = None) -> str:
    """Write the selection into the run's target (one undo step); return a summary.

    Parameters
    ----------
    consent : callable, optional
        Asked when the target's dtype cannot hold the ids (see
        :func:`.widening.write_with_room`); None: never widen.

    Raises
    ------
    InputError
        A plane does not fit.
    LabelsDtypeError
        The ids do not fit the target's dtype and it was not widened.
    """
    run.written = write_with_room(
        lambda: _layers.write_label_planes(
            run.target, selection.planes, run.bases, run.offset, run.overwrite
        ),
        run.target,
        consent,
    )
    where = run_words(run.image, run.indices, run.stack)
    return f"{selection.n_objects} objects on {where} in '{run.target.name}'"


class Targets:
    """Where runs write: the chosen Labels layer, or an everything layer per image.

    Parameters
    ----------
    viewer : napari.Viewer or napari.components.ViewerModel
    """

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self._own: list[tuple[Any, Any]] = []  # (image layer, its everything layer)

    def choose(self, image: Any, name: str | None) -> tuple[Any, bool]:
        """The Labels layer to write into (``name``; None: the image's everything
        layer, made when missing) and whether it is an everything layer.

        Raises
        ------
        InputError
            The named layer does not fit ``image``.
        """
        layers = self.viewer.layers
        if name is not None and name in layers:
            layer = layers[name]
            _layers.check_fits(layer, image)
            return layer, any(own is layer for _, own in self._own)
        for source, own in self._own:
            fits = tuple(own.data.shape) == _layers.plane_shape(image)
            if source is image and own in layers and fits:
                return own, True
        active = layers.selection.active
        own = self.viewer.add_labels(
            np.zeros(_layers.plane_shape(image), dtype=np.int32),
            name=EVERYTHING,
            **_layers.labels_transform(image),
        )
        if active is not None and active in layers:
            layers.selection.active = active  # keep the prompts layer active
        self._own.append((image, own))
        return own, True


def mode_choices(session: EverythingSession | None) -> dict[str, str]:
    """The modes to offer (name -> description), the model's default first."""
    if session is None:
        return {GRID: "SAM's grid of point prompts"}
    return session.everything.names()


def mode_fields(session: EverythingSession | None, mode: str) -> tuple[frozenset, dict]:
    """What a panel shows for ``mode``: its own parameter names and its meaningful
    phase-2 thresholds (name -> label); SAM's grid without a session."""
    if session is None:
        from napari_segany.core.everything import GridProposer
        from napari_segany.core.everything.modes import param_names

        return frozenset(param_names(GridProposer())), dict(GridProposer.filters)
    return session.everything.parameters(mode), session.everything.filters(mode)


def default_values(session: EverythingSession | None, mode: str = "auto") -> dict:
    """Everything-mode parameters the session runs ``mode`` with when none are given."""
    from napari_segany.core.everything import GridParams

    values = {"points_per_side": GridParams().points_per_side, "use_m2m": GridParams().use_m2m}
    values.update({f.name: getattr(FilterParams(), f.name) for f in fields(FilterParams)})
    if session is not None:
        values.update(session.everything.mode_defaults(mode))
    return values


def mode_values(session: EverythingSession | None, mode: str) -> dict:
    """What ``mode`` runs with by default: its own parameters (its ``params_type``'s
    defaults, the session's where it sets them) and its phase-2 thresholds (its own
    where it has them: e.g. AIS keeps every object, the grid SAM's 0.88 / 0.95)."""
    from dataclasses import MISSING

    values = default_values(session, mode)
    if session is None:
        from napari_segany.core.everything import GridProposer

        proposer = GridProposer()
    else:
        proposer = session.everything.proposer(mode)
    own = {
        f.name: values.get(f.name, f.default)
        for f in fields(proposer.params_type)
        if f.default is not MISSING
    }
    return {**own, **{name: v for name, v in values.items() if name in FILTER_NAMES}}
