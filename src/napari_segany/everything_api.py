"""Everything mode of a :class:`~napari_segany.api.SegAny` session.

:class:`EverythingMethods` holds the session's everything-mode methods (``SegAny``
inherits them): the chosen proposer (``core.plugins.Proposer``) makes a plane's
candidates, ``core.everything.selection`` picks objects among them, and
``core.everything.stack.run_planes`` is the one loop over a stack's planes.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence

import numpy as np

from .core import planes
from .core.embeddings import Embedding, ViewEmbeddings
from .core.errors import InputError, NoImageError
from .core.everything import (
    AUTO,
    EverythingModes,
    EverythingResult,
    GridCandidates,
    StackResult,
    segment_everything_stack,
)
from .core.everything.resolution import Resolution, plane_resolution
from .core.plugins import PlaneContext
from .core.predictor import Predictor
from .core.progress import Progress, drain
from .core.volume.carry import CARRY_RULES, carry_objects


class EverythingMethods:
    """Everything mode on the current plane, any plane, or a stack (mixed into SegAny).

    Attributes
    ----------
    everything : EverythingModes
        The session's modes, their parameters and defaults.
    """

    everything: EverythingModes
    predictor: Predictor
    _current: PlaneContext | None
    _planes: planes.PlaneStore
    # (embedding, (proposer name, its params, had pixels), candidates) of the last run
    _everything: tuple[Embedding, tuple, GridCandidates] | None = None
    prepare: Callable[..., Embedding]  # SegAny.prepare: a plane through the cache
    _prepare_plane: Callable[..., Embedding]  # the same for a plane seen in one pass
    _big: object = None  # the current plane when tiled (tiling_api.TiledPlane)
    tiling_of: Callable[..., object]  # TilingMethods.tiling_of
    _decode_tiled: Callable[..., Generator]  # TilingMethods._decode_tiled

    def segment_everything(
        self,
        mode: str = AUTO,
        on_progress: Callable[[Progress], object] | None = None,
        **params,
    ) -> EverythingResult:
        """Segment every object of the current plane.

        The plane's candidates are found once per mode and parameters; calling again with
        other thresholds (``pred_iou_thresh``, ``stability_score_thresh``,
        ``box_nms_thresh``, ``crop_nms_thresh``, ``min_mask_region_area``) only
        re-selects, without the model.

        Parameters
        ----------
        mode : str
            The proposer (``everything.names()``): ``"grid"`` (SAM's grid of point
            prompts, every model), a model's own (``"ais"`` for ``"builtin"``),
            or ``"auto"``, the model's default.
        on_progress : callable, optional
            Called with each :class:`Progress` report.
        **params
            The proposer's parameters (the grid's: SAM's automatic-mask-generator
            ``points_per_side=32, points_per_batch=None, stability_score_offset=1.0,
            crop_n_layers=0, crop_overlap_ratio=512/1500,
            crop_n_points_downscale_factor=1`` and ``clicked_component_only``) and the
            selection's (``pred_iou_thresh=0.88, stability_score_thresh=0.95,
            box_nms_thresh=0.7, crop_nms_thresh=0.7, min_mask_region_area=0``). Those
            not given come from ``everything.merged``. Parameters of the
            model's other proposers are accepted and not used.

        Returns
        -------
        EverythingResult
            ``.labels`` (H, W) uint32 (0 = background, smaller objects on top) and
            ``.objects`` (one record per object, the quality-control table).

        Raises
        ------
        NoImageError
            Before :meth:`set_image` (or with crops after ``set_image(None, embedding=...)``).
        InputError
            On an unknown mode or parameter, or an invalid value.
        """
        big, context = self._big, self._current
        if big is None and context is None:
            raise NoImageError("No image set: call set_image(plane) before segment_everything().")
        proposer, chosen, filters = self.everything.plan(mode, **params)
        source = big if big is not None else context.embedding
        key = (proposer.name, chosen, big is not None or context.rgb is not None)
        known = self._everything
        if known is None or known[0] is not source or known[1] != key:
            self._everything = None  # free the old candidates before decoding new ones
            if big is not None:  # window by window (tiling_api)
                steps = self.decode_everything(
                    big.image, *big.reading[:2], mode, big.reading[2], **params
                )
                candidates = drain(steps, on_progress)
            else:
                candidates = drain(proposer.propose(context, chosen), on_progress)
                candidates.resolution = self._resolution(context.embedding)
            self._everything = (source, key, candidates)
        return self._everything[2].select(filters)

    def decode_everything(
        self,
        image: np.ndarray,
        contrast_limits=None,
        channels: Sequence[int] | None = None,
        mode: str = AUTO,
        channel_axis: int | None = None,
        **params,
    ) -> Generator[Progress, None, GridCandidates]:
        """Phase 1 of everything mode on any plane, as a generator (stacks, the widget).

        The plane is embedded through the cache; it does not become current. Arguments
        as in :meth:`set_image` and :meth:`segment_everything`; select among the
        returned candidates with ``.select(filters)``. A plane the session tiles
        (:attr:`tiling`) is decoded window by window (``core.everything.tiled``: its
        ``TiledCandidates`` select and stitch the same way).
        """
        proposer, chosen, _ = self.everything.plan(mode, **params)
        tiling = self.tiling_of(image, channel_axis)
        if tiling is not None:  # window by window, each as a plane of its own
            return (
                yield from self._decode_tiled(image, contrast_limits, channels, channel_axis,
                                              tiling, mode, params)
            )  # fmt: skip
        yield Progress(0, 1, "embedding")
        embedding = self._prepare_plane(
            image, contrast_limits, channels, channel_axis, refine=False, run=True
        )
        context = self._planes.find(embedding)  # a prepared plane: its views are kept
        if context is None or context.rgb is None:  # not kept: a stack would fill the store
            rgb = self.predictor.rgb(image, contrast_limits, channels, channel_axis)
            views = ViewEmbeddings(self.predictor.embed)
            context = PlaneContext(self.predictor, embedding, rgb, views)
        candidates = yield from proposer.propose(context, chosen)
        candidates.resolution = self._resolution(embedding)
        return candidates

    def _resolution(self, embedding: Embedding) -> Resolution:
        """How the model saw the plane (phase 2 warns when objects were too small)."""
        return plane_resolution(embedding, self.predictor.model.image_size)

    def segment_everything_stack(
        self,
        stack: np.ndarray,
        spatial_axes: tuple[int, int] = (-2, -1),
        channel_axis: int | None = None,
        contrast_limits=None,
        channels: Sequence[int] | None = None,
        link: bool | str = False,
        link_iou: float = 0.5,
        on_progress: Callable[[Progress], object] | None = None,
        mode: str = AUTO,
        **params,
    ) -> StackResult:
        """Everything mode on every plane of an nD stack; label ids unique in the stack.

        Plane embeddings go through the cache. To cancel, raise from ``on_progress`` (or
        drive ``core.everything.stack.segment_everything_stack`` yourself).

        Parameters
        ----------
        stack : array-like, nD
            Two spatial axes, optionally a channel axis, any number of plane axes.
        spatial_axes : (int, int)
            The (row, col) axes.
        channel_axis : int, optional
        contrast_limits, channels
            As in :meth:`set_image`, for every plane.
        link : bool or {"overlap", "propagation"}
            Give an object the id of an object of the previous plane along the last
            plane axis (e.g. Z), so it keeps one id: ``True`` / ``"overlap"``, the one
            it overlaps (IoU >= ``link_iou``); ``"propagation"``, the one that, carried
            onto its plane by the model as a propagated object is
            (``core.volume.carry``, one decoder call per object and plane), overlaps
            it so -- for objects that move or change between planes.
        link_iou : float
        on_progress : callable, optional
            Called with each :class:`Progress` report.
        mode, **params
            As in :meth:`segment_everything`.

        Returns
        -------
        StackResult
            ``.labels`` (the stack's shape without its channel axis, uint32) and
            ``.objects`` (with ``plane`` set).
        """
        _, _, filters = self.everything.plan(mode, **params)

        plane_channels = None if channel_axis is None else -1  # planes come channels last

        def decode(plane: np.ndarray):
            return self.decode_everything(
                plane, contrast_limits, channels, mode, plane_channels, **params
            )

        carry = self._carry(link, contrast_limits, channels, plane_channels)
        steps = segment_everything_stack(
            decode, stack, filters, spatial_axes, channel_axis, bool(link), link_iou, carry
        )
        return drain(steps, on_progress)

    def _carry(self, link, contrast_limits, channels, plane_channels):
        """For ``link="propagation"``: a plane's objects carried onto the next plane
        (``core.volume.carry``); None for the other rules."""
        if link not in (False, True, "overlap", "propagation"):
            raise InputError(f'link must be False, True, "overlap" or "propagation", got {link!r}.')
        if link != "propagation":
            return None
        rules = CARRY_RULES

        def carry(previous: np.ndarray, plane: np.ndarray) -> np.ndarray:
            self.set_image(plane, contrast_limits, channels, plane_channels)

            def predict(prompt: dict) -> tuple[np.ndarray, float]:
                result = self.segment(**prompt, multimask=False)
                return result.masks[0], float(result.scores[0])

            return carry_objects(previous, predict, rules)

        return carry
