"""Scripting API: a Segment Anything session on one model.

>>> from napari_segany import SegAny
>>> sam = SegAny("vit_b_lm")                       # doctest: +SKIP
>>> sam.set_image(stack[12], contrast_limits=(100, 3000))   # doctest: +SKIP
>>> result = sam.segment(points_yx=[[140, 210]], labels=[1])  # doctest: +SKIP
>>> best = result.masks[result.scores.argmax()]     # doctest: +SKIP

Coordinates are napari's (row, col) = (y, x) in pixels of the plane.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xxhash

from .core import click_guide, seeds
from .core.automatic import GridCandidates, GridParams, decode_grid, everything_params
from .core.embeddings import Embedding, EmbeddingCache
from .core.errors import ImageError, InputError, NoImageError
from .core.everything_select import EverythingResult
from .core.everything_stack import StackResult, segment_everything_stack
from .core.image import to_model_rgb, validate_plane
from .core.mask_ops import clip_masks_to_boxes, keep_clicked_components
from .core.model.sam import Sam
from .core.predictor import Prediction, Predictor
from .core.progress import Progress, drain
from .core.registry import DEFAULT_MODEL, REGISTRY

logger = logging.getLogger(__name__)
# planes whose head objects a session keeps: labels and float16 foreground and border
# logits, 8 MiB for 1024 x 1024
OBJECTS_KEPT = 8

DEFAULT_CACHE_BYTES = 1 << 30  # 1 GiB: 256 SAM embeddings (64 x 64 x 256 float32)


@dataclass(frozen=True)
class SegmentResult:
    """Masks for one prompt set (or N boxes) on the current plane.

    Attributes
    ----------
    masks : numpy.ndarray, ([N,] K, H, W) bool
        K = 3 candidates with ``multimask=True``, else 1.
    scores : numpy.ndarray, ([N,] K) float32
        The model's predicted IoU of each mask (pick the best with ``argmax``).
    logits : numpy.ndarray, ([N,] K, 256, 256) float32
        Low-resolution logits; pass one as ``mask_input`` to refine.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray


class SegAny:
    """Segment Anything on microscopy planes: one model, an embedding cache, a current plane.

    Parameters
    ----------
    model : str
        Registry name (``"builtin"``, the default: a small model shipped in the package
        that works offline; ``"vit_b"``, ``"vit_t"``, ``"vit_b_lm"``, ...), the path of a
        checkpoint file, or, with ``checkpoint``, the registry name of its architecture.
    checkpoint : str or Path, optional
        Local checkpoint file (works offline); its architecture is detected.
    device : str
        ``"auto"`` (CUDA, then Apple MPS, then CPU), or an explicit torch device.
    precision : str
        ``"auto"`` (bf16 where the device computes it natively), ``"fp32"`` or ``"bf16"``.
    cache_bytes : int
        Memory budget of the embedding cache (planes already embedded are never
        recomputed while they fit).
    clip_to_box : bool, optional
        Cut the masks of a box prompt to the box (pixels outside it are never part of
        the object). Default: the model's registry setting, on for ``"builtin"`` only
        (its masks leak into touching neighbours past the box; docs/models.md), off
        for SAM's weights, whose results stay those of the reference code. Also the
        attribute ``clip_to_box``, which may be changed at any time.
    clicked_component_only : bool, optional
        Keep only the connected parts of a mask that a positive click falls on (a
        nucleus is one piece; the built-in model's masks reach neighbours through
        gaps). Default and attribute as for ``clip_to_box``: on for ``"builtin"``.
        In everything mode each grid point's masks are reduced the same way (their
        area, box and stability score are then those of the part).
    snap_to_objects : bool, optional
        Answer a single-object prompt with the object of the model's foreground head
        that it designates (models with a head only: the built-in model): the
        best-scored mask of a click on one object becomes that object (split from a
        neighbour the head merged it with); a box's masks become the object most of
        their pixels fall on, fitted to the box (rules: ``core.seeds.snap_to_objects``).
        Applied after the two rules above. Default and attribute as for
        ``clip_to_box``: on for ``"builtin"``.

    Attributes
    ----------
    everything_defaults : dict
        Everything-mode parameters used where a call does not give them: the model's
        registry setting (for ``"builtin"``: thresholds calibrated for it,
        docs/models.md), empty (SAM's defaults) for other models. May be changed.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        checkpoint: str | Path | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        clip_to_box: bool | None = None,
        clicked_component_only: bool | None = None,
        snap_to_objects: bool | None = None,
    ) -> None:
        from .core.device import resolve_precision
        from .core.loading import load_model

        loaded = load_model(model, checkpoint=checkpoint, device=device)
        resolved = resolve_precision(precision, loaded.device)
        entry = REGISTRY.get(model) if checkpoint is None else None
        if clip_to_box is None:
            clip_to_box = entry is not None and entry.clip_to_box
        if clicked_component_only is None:
            clicked_component_only = entry is not None and entry.clicked_component_only
        if snap_to_objects is None:
            snap_to_objects = entry is not None and entry.snap_to_objects
        if snap_to_objects and loaded.model.foreground_head is None:
            raise InputError(
                f"snap_to_objects needs a model with a foreground head; {loaded.name!r} "
                "has none (only the built-in model has one). Leave snap_to_objects off."
            )
        settings = {
            "clip_to_box": clip_to_box,
            "clicked_component_only": clicked_component_only,
            "snap_to_objects": snap_to_objects,
            "everything_defaults": dict(entry.everything) if entry is not None else {},
        }
        name = str(loaded.name)
        self._setup(loaded.model, loaded.device, resolved, name, cache_bytes, **settings)

    @classmethod
    def from_model(
        cls,
        sam: Sam,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        name: str = "custom",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> SegAny:
        """Session around an already built :class:`Sam` (e.g. a tiny test model).

        ``device`` and ``precision`` default to CPU and fp32; ``"auto"`` is resolved as in
        the constructor. ``name`` identifies the model in cache keys and embeddings.
        """
        from .core.device import resolve_device, resolve_precision

        resolved_device = resolve_device(device)
        self = cls.__new__(cls)
        self._setup(
            sam, resolved_device, resolve_precision(precision, resolved_device), name, cache_bytes
        )
        return self

    def _setup(
        self,
        sam: Sam,
        device,
        precision: str,
        name: str,
        cache_bytes: int,
        everything_defaults: dict | None = None,
        clip_to_box: bool = False,
        clicked_component_only: bool = False,
        snap_to_objects: bool = False,
    ) -> None:
        self.model_name = name
        self.clip_to_box = bool(clip_to_box)
        self.clicked_component_only = bool(clicked_component_only)
        self.snap_to_objects = bool(snap_to_objects)
        self.everything_defaults: dict = dict(everything_defaults or {})
        self.precision = precision
        self.predictor = Predictor(sam, device, precision, model_key=f"{name}:{precision}")
        self.cache = EmbeddingCache(cache_bytes)
        self._embedding: Embedding | None = None
        self._source: tuple | None = None  # (image, contrast_limits, channels) of the plane
        self._rgb: np.ndarray | None = None  # its model RGB, made when needed
        # (embedding, GridParams, whether the plane was known, GridCandidates) of the last
        # everything-mode decoding
        self._everything: tuple[Embedding, GridParams, bool, GridCandidates] | None = None
        # (embedding, labels (H, W) int32, (2, H, W) float16 foreground and border
        # logits) of the foreground head's objects of recent planes
        # and the zoom they were found with
        self._objects: list[tuple[Embedding, np.ndarray, np.ndarray, int]] = []
        self._head_views = seeds.HEAD_VIEWS
        # (plane embedding, {content key: embedding}) of one plane's views -- its tiles,
        # turned or not, and the plane turned -- that the head's pass or a click's guide
        # embedded (2 MiB each for the built-in model; 2 zoom^2 at most)
        self._view_embeddings: tuple[Embedding | None, dict[tuple, Embedding]] = (None, {})
        logger.info("SegAny ready: model %s on %s (%s)", name, device, precision)

    @property
    def device(self) -> torch.device:
        """Device the model runs on."""
        return self.predictor.device

    @property
    def head_views(self) -> int:
        """Views the foreground head's objects are found on (snapped prompts,
        :meth:`head_objects`): 2 (default) averages the head's logits over the plane and
        the plane turned by 180 degrees, 1 uses the plane alone (half the time; see
        ``core.seeds.HEAD_VIEWS``). Setting it forgets the objects found so far."""
        return self._head_views

    @head_views.setter
    def head_views(self, views: int) -> None:
        seeds.check_views(views)
        self._head_views = int(views)
        self._objects = []

    @property
    def embedding(self) -> Embedding | None:
        """Embedding of the current plane (None before :meth:`set_image`)."""
        return self._embedding

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """(H, W) of the current plane (None before :meth:`set_image`)."""
        return None if self._embedding is None else self._embedding.original_hw

    def embedding_key(
        self, image: np.ndarray, contrast_limits=None, channels: Sequence[int] | None = None
    ) -> tuple:
        """Cache key of a plane: content hash, shape, dtype, conversion options, model.

        Raises
        ------
        ImageError
            If the plane or its options are invalid.
        """
        array = np.asarray(image)
        validate_plane(array, contrast_limits, channels)
        digest = xxhash.xxh3_128_hexdigest(memoryview(np.ascontiguousarray(array)).cast("B"))
        limits = None
        if contrast_limits is not None:
            limits = tuple(np.asarray(contrast_limits, dtype=np.float64).ravel().tolist())
        picked = None if channels is None else tuple(int(c) for c in np.atleast_1d(channels))
        return (digest, array.shape, array.dtype.str, limits, picked, self.predictor.model_key)

    def embed(
        self, image: np.ndarray, contrast_limits=None, channels: Sequence[int] | None = None
    ) -> Embedding:
        """Embedding of a plane from the cache, or computed and cached (thread-safe).

        Does not change the current plane; see :meth:`set_image` for the arguments.
        """
        key = self.embedding_key(image, contrast_limits, channels)
        embedding = self.cache.get(key)
        if embedding is None:
            rgb = to_model_rgb(image, contrast_limits=contrast_limits, channels=channels)
            embedding = self.cache.put(key, self.predictor.embed(rgb))
        return embedding

    def set_image(
        self, image: np.ndarray, contrast_limits=None, channels: Sequence[int] | None = None
    ) -> Embedding:
        """Make ``image`` the current plane, embedding it unless it is cached.

        Parameters
        ----------
        image : array-like, (H, W) or (H, W, C)
            One plane, channel axis last, any numeric or bool dtype (for a stack, pass
            one plane). Conversion rules: ``napari_segany.core.image``.
        contrast_limits : (low, high) or array (k, 2), optional
            Intensity range mapped to black..white, e.g. the napari layer's
            ``contrast_limits``; default: robust percentiles (uint8 unchanged).
        channels : sequence of 1 to 3 int, optional
            Channels to use as R, G, B (default: the first three).

        Returns
        -------
        Embedding
            The plane's embedding, now current.

        Raises
        ------
        ImageError
            On an invalid plane or option; the previous plane stays current.
        """
        self._embedding = self.embed(image, contrast_limits, channels)
        self._source, self._rgb = (image, contrast_limits, channels), None
        return self._embedding

    def set_embedding(
        self,
        embedding: Embedding,
        image: np.ndarray | None = None,
        contrast_limits=None,
        channels: Sequence[int] | None = None,
    ) -> None:
        """Make a precomputed :class:`Embedding` (e.g. from :meth:`embed`) current.

        Parameters
        ----------
        embedding : Embedding
        image : array-like, optional
            The plane it is the embedding of (``contrast_limits`` and ``channels`` as
            in :meth:`set_image`; not embedded again). Without it, everything mode
            with crops needs :meth:`set_image` (crops are cut from the image itself),
            and the foreground head's objects are found on the whole plane, never
            zoomed (``head_zoom``, see :meth:`head_objects`).

        Raises
        ------
        ImageError
            ``image`` is not a valid plane of the embedding's shape.
        """
        source = None
        if image is not None:
            validate_plane(np.asarray(image), contrast_limits, channels)
            shape = tuple(np.asarray(image).shape[:2])
            if shape != tuple(embedding.original_hw):
                raise ImageError(
                    f"The image is {shape} but the embedding is for a "
                    f"{tuple(embedding.original_hw)} plane; pass the plane it was made from."
                )
            source = (image, contrast_limits, channels)
        self._embedding = embedding
        self._source, self._rgb = source, None

    def head_objects_known(
        self, image: np.ndarray, contrast_limits=None, channels: Sequence[int] | None = None
    ) -> bool:
        """Whether :meth:`head_objects` of this plane would return at once: its
        embedding is cached and its objects are among those kept (no model runs)."""
        embedding = self.cache.get(self.embedding_key(image, contrast_limits, channels))
        return embedding is not None and any(entry[0] is embedding for entry in self._objects)

    def segment(
        self,
        points_yx: np.ndarray | Sequence | None = None,
        labels: np.ndarray | Sequence | None = None,
        box_yxyx: np.ndarray | Sequence | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> SegmentResult:
        """Segment the current plane from prompts in (row, col) pixel coordinates.

        Parameters
        ----------
        points_yx : array (P, 2), optional
            Points as (y, x), inside the plane.
        labels : array (P,), optional
            1 = on the object, 0 = background; required with ``points_yx``.
        box_yxyx : array (4,) or (N, 4), optional
            Box(es) as (y0, x0, y1, x1); N boxes give N objects (leading N axis).
        mask_input : array (256, 256), (1, 256, 256) or (N, 1, 256, 256), optional
            ``logits`` of a previous result, to refine it.
        multimask : bool
            Three candidate masks (K = 3) instead of one (K = 1).

        Returns
        -------
        SegmentResult
            With :attr:`clip_to_box` and a box, the masks are cut to their box; with
            :attr:`clicked_component_only` and a positive click, they keep only the
            parts under a positive click. The scores and low-resolution logits stay
            the model's.

        Raises
        ------
        NoImageError
            Before :meth:`set_image`.
        PromptError
            On an invalid prompt (nothing changes).
        """
        if self._embedding is None:
            raise NoImageError("No image set: call set_image(plane) before segment(...).")
        prediction = self.predictor.predict(
            self._embedding, points_yx, labels, box_yxyx, mask_input, multimask
        )
        masks = prediction.masks
        boxes = None if box_yxyx is None else np.asarray(box_yxyx, dtype=np.float64)
        points = None if points_yx is None else np.asarray(points_yx, dtype=np.float64)
        if self.clip_to_box and boxes is not None:
            masks = clip_masks_to_boxes(masks, boxes)
        if self.clicked_component_only and points is not None:
            masks = keep_clicked_components(masks, points, np.asarray(labels))
        if self.snap_to_objects:
            objects, logits, zoom = self._found_objects()
            if points is not None and boxes is None and mask_input is None:
                masks = self._guided(masks, prediction, points, labels, zoom, multimask)
            masks = seeds.snap_to_objects(
                masks,
                prediction.scores,
                objects,
                points,
                labels,
                boxes,
                border_logits=logits[1],
                foreground_logits=logits[0],
            )
        return SegmentResult(masks, prediction.scores, prediction.logits)

    def head_objects(
        self, image: np.ndarray | None = None, contrast_limits=None, channels=None
    ) -> np.ndarray:
        """The objects of the model's foreground head on a plane.

        Found as everything mode's ``proposals="foreground"`` finds them with its default
        ``head_zoom`` (0: zoomed in on planes of small objects, ``core.seeds``). The
        objects of the last :data:`OBJECTS_KEPT` planes are kept, so a background job
        may find them ahead (the widget does, after embedding a plane).

        Parameters
        ----------
        image : array-like, optional
            A plane (default: the current plane); ``contrast_limits`` and ``channels``
            as in :meth:`set_image`. It does not become current.

        Returns
        -------
        numpy.ndarray, (H, W) int32
            0 background, objects 1..K (``core.seeds.seeded_objects``).

        Raises
        ------
        NoImageError
            Before :meth:`set_image` (without ``image``).
        InputError
            The model has no foreground head.
        """
        return self._plane_objects(image, contrast_limits, channels)[0]

    def _plane_objects(
        self, image: np.ndarray | None = None, contrast_limits=None, channels=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`head_objects`' labels and the foreground and border logits they
        were found on ((2, H, W) float16: snapped prompts split and fit with them)."""
        return self._found_objects(image, contrast_limits, channels)[:2]

    def _found_objects(
        self, image: np.ndarray | None = None, contrast_limits=None, channels=None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """:meth:`_plane_objects` and the zoom they were found with."""
        self.predictor.model.require_foreground_head()
        if image is None:
            embedding = self._embedding
            if embedding is None:
                raise NoImageError("No image set: call set_image(plane) first.")
        else:
            embedding = self.embed(image, contrast_limits, channels)
        for known, objects, logits, zoom in reversed(self._objects):
            if known is embedding:
                return objects, logits, zoom
        if image is None:
            rgb = self._model_rgb()
        else:
            rgb = to_model_rgb(image, contrast_limits=contrast_limits, channels=channels)
        found = seeds.find_objects(
            self.predictor.model,
            embedding,
            rgb,
            self._view_embedder(embedding),
            views=self._head_views,
        )
        logits = np.stack([found.foreground_logits, found.border_logits], dtype=np.float16)
        self._objects = [*self._objects, (embedding, found.labels, logits, found.zoom)]
        self._objects = self._objects[-OBJECTS_KEPT:]
        return found.labels, logits, found.zoom

    def _view_embedder(self, embedding: Embedding) -> Callable[[np.ndarray], Embedding]:
        """``rgb -> Embedding`` for views of the plane of ``embedding`` (its tiles,
        turned or not, the plane turned): each view is embedded once and kept, for the
        plane last asked about (the head's pass fills it, clicks' guides find their
        views there; another plane's views are dropped)."""
        plane, known = self._view_embeddings
        if plane is not embedding:
            known = {}
            self._view_embeddings = (embedding, known)

        def embed(view: np.ndarray) -> Embedding:
            key = _view_key(view)
            if key not in known:
                known[key] = self.predictor.embed(view)
            return known[key]

        return embed

    def _guided(
        self,
        masks: np.ndarray,
        prediction: Prediction,
        points: np.ndarray,
        labels,
        zoom: int,
        multimask: bool,
    ) -> np.ndarray:
        """The masks of a click with the best-scored one replaced by the click's guide
        (``core.click_guide``: decoded on the zoomed tile, from two views), which the
        snapped click then splits its object with; unchanged where the clicks spread
        over more than one tile, or where only the plane's embedding is known. The
        views are usually those the head's pass embedded (:meth:`_view_embedder`); on
        the whole plane the first view is the plane, and the click's own
        ``prediction`` its decode."""
        embedding, rgb = self._embedding, self._model_rgb()
        window = click_guide.click_window(embedding.original_hw, zoom, points)
        if window is None or rgb is None:  # no pixels after set_embedding(embedding)
            return masks
        embed = self._view_embedder(embedding)
        crop, turned = click_guide.window_views(rgb, window)
        whole = window == (0, embedding.original_hw[0], 0, embedding.original_hw[1])
        views = (embedding if whole else embed(crop), embed(turned))
        first = prediction if whole else None
        point_labels = np.asarray(labels)
        guide = click_guide.guide_mask(
            self.predictor, views, window, embedding.original_hw, points, point_labels,
            multimask, first,
        )  # fmt: skip
        if self.clicked_component_only:
            guide = keep_clicked_components(guide[None], points, point_labels)[0]
        guided = masks.copy()
        guided[int(np.argmax(prediction.scores))] = guide
        return guided

    def segment_everything(
        self, on_progress: Callable[[Progress], object] | None = None, **params
    ) -> EverythingResult:
        """Segment every object of the current plane from a grid of point prompts.

        The grid is decoded once per plane and grid parameters; calling again with other
        thresholds (``pred_iou_thresh``, ``stability_score_thresh``, ``box_nms_thresh``,
        ``crop_nms_thresh``, ``min_mask_region_area``) only re-selects masks, without
        the model.

        Parameters
        ----------
        on_progress : callable, optional
            Called with each :class:`Progress` report of the decoding.
        **params
            SAM's automatic-mask-generator parameters: ``points_per_side=32,
            points_per_batch=None, pred_iou_thresh=0.88, stability_score_thresh=0.95,
            stability_score_offset=1.0, box_nms_thresh=0.7, crop_n_layers=0,
            crop_nms_thresh=0.7, crop_overlap_ratio=512/1500,
            crop_n_points_downscale_factor=1, min_mask_region_area=0`` (SAM's
            defaults), and ``clicked_component_only``. Those not given come from
            :meth:`everything_parameters` (for ``"builtin"``: its calibrated
            thresholds and the clicked-part rule).

        Returns
        -------
        EverythingResult
            ``.labels`` (H, W) uint32 (0 = background, smaller objects on top) and
            ``.objects`` (one record per object, the quality-control table).

        Raises
        ------
        NoImageError
            Before :meth:`set_image` (or with crops after :meth:`set_embedding`).
        InputError
            On an unknown parameter or an invalid value.
        """
        if self._embedding is None:
            raise NoImageError("No image set: call set_image(plane) before segment_everything().")
        grid, filters = everything_params(**self.everything_parameters(**params))
        cached, has_image = self._everything, self._source is not None  # zoom needs it
        if cached is None or cached[0] is not self._embedding or cached[1:3] != (grid, has_image):
            self._everything = None  # free the old candidates before decoding new ones
            steps = decode_grid(self.predictor, self._model_rgb(), grid, self._embedding)
            self._everything = (self._embedding, grid, has_image, drain(steps, on_progress))
        return self._everything[3].select(filters)

    def everything_parameters(self, **params) -> dict:
        """The everything-mode parameters a call with ``params`` runs with.

        ``params`` first, then :attr:`everything_defaults`, then
        ``clicked_component_only`` from the attribute of that name; SAM's defaults for
        anything else.
        """
        merged = {"clicked_component_only": self.clicked_component_only}
        merged.update(self.everything_defaults)
        merged.update(params)
        return merged

    def _model_rgb(self) -> np.ndarray | None:
        """(H, W, 3) uint8 of the current plane; None after :meth:`set_embedding`."""
        if self._rgb is None and self._source is not None:
            image, limits, channels = self._source
            self._rgb = to_model_rgb(image, contrast_limits=limits, channels=channels)
        return self._rgb

    def segment_everything_stack(
        self,
        stack: np.ndarray,
        spatial_axes: tuple[int, int] = (-2, -1),
        channel_axis: int | None = None,
        contrast_limits=None,
        channels: Sequence[int] | None = None,
        link: bool = False,
        link_iou: float = 0.5,
        on_progress: Callable[[Progress], object] | None = None,
        **params,
    ) -> StackResult:
        """Everything mode on every plane of an nD stack; label ids unique in the stack.

        Plane embeddings go through the cache. To cancel, raise from ``on_progress`` (or
        drive ``core.everything_stack.segment_everything_stack`` yourself).

        Parameters
        ----------
        stack : array-like, nD
            Two spatial axes, optionally a channel axis, any number of plane axes.
        spatial_axes : (int, int)
            The (row, col) axes.
        channel_axis : int, optional
        contrast_limits, channels
            As in :meth:`set_image`, for every plane.
        link : bool
            Give an object the id of the object it overlaps (IoU >= ``link_iou``) in the
            previous plane along the last plane axis (e.g. Z), so it keeps one id.
        link_iou : float
        on_progress : callable, optional
            Called with each :class:`Progress` report.
        **params
            As in :meth:`segment_everything`.

        Returns
        -------
        StackResult
            ``.labels`` (the stack's shape without its channel axis, uint32) and
            ``.objects`` (with ``plane`` set).
        """
        steps = segment_everything_stack(
            self.predictor,
            stack,
            spatial_axes,
            channel_axis,
            contrast_limits,
            channels,
            link=link,
            link_iou=link_iou,
            embed_plane=lambda plane: self.embed(plane, contrast_limits, channels),
            **self.everything_parameters(**params),
        )
        return drain(steps, on_progress)

    def __repr__(self) -> str:
        return (
            f"SegAny(model={self.model_name!r}, device={str(self.device)!r}, "
            f"precision={self.precision!r}, cached_embeddings={len(self.cache)})"
        )


def _view_key(rgb_uint8: np.ndarray) -> tuple:
    """Content key of a view of a plane (:meth:`SegAny._view_embedder`)."""
    view = np.ascontiguousarray(rgb_uint8)
    return view.shape, xxhash.xxh3_128_hexdigest(memoryview(view).cast("B"))
