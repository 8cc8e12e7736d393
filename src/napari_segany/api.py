"""Scripting API: a Segment Anything session on one model.

>>> from napari_segany import SegAny
>>> sam = SegAny("vit_b_lm")                       # doctest: +SKIP
>>> sam.set_image(stack[12], contrast_limits=(100, 3000))   # doctest: +SKIP
>>> result = sam.segment(points_yx=[[140, 210]], labels=[1])  # doctest: +SKIP
>>> best = result.masks[result.scores.argmax()]     # doctest: +SKIP

Coordinates are napari's (row, col) = (y, x) in pixels of the plane.

The session is general: what a model adds (prompt refiners, everything-mode
proposers, defaults) comes from its plug-in (``core.plugins``), named by its registry
entry. A click becomes a mask in :meth:`SegAny.segment`: the predictor, then each
refiner. Everything mode picks objects in :meth:`SegAny.segment_everything`: the
chosen proposer, then ``core.everything.selection``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import planes
from .core.embeddings import Embedding, EmbeddingCache, plane_key
from .core.errors import ImageError, NoImageError
from .core.everything import EverythingModes, GridProposer
from .core.everything.ais import AisProposer
from .core.everything.apg import ApgProposer
from .core.image import validate_plane
from .core.model.sam import Sam
from .core.plugins import (
    NO_PLUGIN,
    ModelPlugin,
    PlaneContext,
    Prompt,
    PromptRefiner,
    choose_refiners,
)
from .core.predictor import Predictor
from .core.registry import DEFAULT_MODEL, REGISTRY
from .core.results import SegmentResult
from .everything_api import EverythingMethods
from .refine_api import RefineMethods
from .store_api import StoreMethods
from .tiling_api import TilingMethods, WindowNotes
from .volume_api import VolumeMethods

__all__ = ["SegAny", "SegmentResult"]

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 1 << 30  # 1 GiB: 256 SAM embeddings (64 x 64 x 256 float32)


class SegAny(EverythingMethods, TilingMethods, StoreMethods, VolumeMethods, RefineMethods):
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
    refine : "auto", "none", or a sequence of refiner names or refiners
        The rules applied to every prompt's masks after the decoder (``core.plugins``):
        ``"auto"``, the model's own (for ``"builtin"``: ``clip_to_box``,
        ``clicked_parts`` and ``snap_to_objects``, docs/models.md; none for SAM's
        weights, whose results stay those of the reference code); ``"none"``, the
        decoder's masks; or a selection, e.g. ``["clip_to_box"]``.
    embedding_store : str or Path, optional
        A directory where plane embeddings are kept on disk (``core.store``): a plane
        embedded once, in this session or an earlier one, is read back instead of
        embedded again (keyed by content, reading options and the model's weights).
    tiling : "auto", None or (tile, halo)
        How planes larger than the model's frame are seen (``core.tiling``):
        ``"auto"`` cuts planes longer than twice the frame into windows of the frame's
        size (tiles of 3/4 of it with a halo of 1/8 each side), embedded only when a
        prompt or everything mode needs them; None: every plane in one pass, shrunk to
        the frame; (tile, halo): those sizes, in pixels.

    Attributes
    ----------
    predictor : Predictor
        The model on its device: ``name``, ``device``, ``precision``, ``channel_rule``,
        ``rgb(plane)`` (the plane as the model sees it) and ``describe_channels(plane)``.
    cache : EmbeddingCache
        The embeddings kept (LRU, bounded in bytes).
    everything : EverythingModes
        Everything mode's choices: ``names()`` (the modes, ``"auto"``'s first),
        ``parameters(mode)``, ``defaults`` (the model's parameters used where a call
        does not give them, e.g. ``"builtin"``'s calibrated thresholds; may be
        changed) and ``merged(**params)`` (what a call runs with).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        checkpoint: str | Path | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        refine: str | Sequence = "auto",
        embedding_store: str | Path | None = None,
        tiling: Any = "auto",
    ) -> None:
        from .core.device import resolve_precision
        from .core.loading import load_model
        from .core.plugins import load_plugin

        loaded = load_model(model, checkpoint=checkpoint, device=device)
        entry = REGISTRY.get(model) if checkpoint is None else None
        plugin = load_plugin(entry.plugin) if entry is not None else NO_PLUGIN
        precision = resolve_precision(precision, loaded.device)
        self._setup(loaded.model, loaded.device, precision, str(loaded.name), cache_bytes, plugin)
        self.refiners = refine
        self.embedding_store = embedding_store
        self.tiling = tiling

    @classmethod
    def from_model(
        cls,
        sam: Sam,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        name: str = "custom",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        plugin: ModelPlugin = NO_PLUGIN,
        refine: str | Sequence = "auto",
        embedding_store: str | Path | None = None,
        tiling: Any = "auto",
    ) -> SegAny:
        """Session around an already built :class:`Sam` (e.g. a tiny test model).

        ``device`` and ``precision`` default to CPU and fp32; ``"auto"`` is resolved as in
        the constructor. ``name`` identifies the model in cache keys and embeddings;
        ``plugin`` gives its refiners and proposers.
        """
        from .core.device import resolve_device, resolve_precision

        resolved = resolve_device(device)
        self = cls.__new__(cls)
        precision = resolve_precision(precision, resolved)
        self._setup(sam, resolved, precision, name, cache_bytes, plugin)
        self.refiners = refine
        self.embedding_store = embedding_store
        self.tiling = tiling
        return self

    def _setup(
        self, sam: Sam, device, precision: str, name: str, cache_bytes: int, plugin: ModelPlugin
    ) -> None:
        self.predictor = Predictor(
            sam,
            device,
            precision,
            f"{name}:{precision}",
            plugin.max_upscale,
            name,
            plugin.channel_rule,
        )
        self.cache = EmbeddingCache(cache_bytes)
        proposers: tuple = (GridProposer(), *plugin.proposers)
        default_mode = plugin.default_mode
        if getattr(sam, "instance_decoder", None) is not None:  # micro-sam's AIS and APG
            own = {p.name for p in proposers}
            proposers += tuple(p for p in (AisProposer(), ApgProposer()) if p.name not in own)
            default_mode = AisProposer.name if default_mode == GridProposer.name else default_mode
        defaults = {**sam.everything_defaults, **plugin.everything_defaults}
        self.everything = EverythingModes(proposers, default_mode, defaults)
        self._refiners: tuple[PromptRefiner, ...] = ()
        self._plugin = plugin
        self._planes = planes.PlaneStore(self.predictor)
        self._current: PlaneContext | None = None
        self._window_notes = WindowNotes()
        logger.info("SegAny ready: model %s on %s (%s)", name, device, precision)

    @property
    def refiners(self) -> tuple[PromptRefiner, ...]:
        """The active prompt refiners; set them as the ``refine`` parameter says
        (``sa.refiners = "none"``, ``sa.refiners = ["clip_to_box"]``; an unknown choice
        or name is an ``InputError`` and changes nothing)."""
        return self._refiners

    @refiners.setter
    def refiners(self, refine: str | Sequence) -> None:
        self._refiners = choose_refiners(self._plugin, refine, self.predictor.name)
        self.everything.clicked_parts = any(r.name == "clicked_parts" for r in self._refiners)

    @property
    def current(self) -> PlaneContext | None:
        """The current plane (None before :meth:`set_image`): its ``embedding``, ``hw``
        (H, W) and, when known, ``rgb`` (the plane as the model saw it)."""
        return self._current

    def fork(self) -> SegAny:
        """A session sharing this one's model, embedding cache and store, prepared
        planes and settings, with a current plane of its own (none yet).

        A worker thread computes with the fork while this session answers prompts on
        another thread (the widget's jobs): neither changes the other's current plane.
        Settings assigned later on one are not seen by the other.
        """
        twin = copy.copy(self)
        twin.everything = copy.copy(self.everything)  # its defaults: a snapshot too
        twin.everything.defaults = dict(self.everything.defaults)
        twin._current = None
        twin._big = None
        twin._everything = None  # (this session's last candidates stay this session's)
        twin.last_refinement = None
        return twin

    def prepare(
        self,
        image: np.ndarray,
        contrast_limits=None,
        channels: Sequence[int] | None = None,
        channel_axis: int | None = None,
        *,
        refine: bool = True,
        run: bool = True,
        region_yxyx: Sequence[float] | None = None,
    ) -> Embedding | None:
        """Embed a plane (through the cache) and run the model's per-plane preparation.

        What :meth:`set_image` does before the plane becomes current; the widget runs it
        in the background, so a prompt on the plane never waits for the model's
        preparation (for ``"builtin"``: its foreground head's objects and their views).
        The current plane does not change; thread-safe.

        Parameters
        ----------
        image, contrast_limits, channels, channel_axis
            The plane, as in :meth:`set_image`.
        refine : bool
            Also run the :attr:`refiners`' preparation; False: only the embedding.
        run : bool
            False: run no model, only say whether the plane is ready: its embedding
            when it is cached (and prepared, with ``refine``), else None.
        region_yxyx : (y0, x0, y1, x1), optional
            Where the next prompt lies, for a plane seen window by window
            (:attr:`tiling`): the window holding it is prepared; without it such a
            plane prepares nothing (None).

        Returns
        -------
        Embedding or None
            The plane's embedding (for a tiled plane: the window's), or None (with
            ``run=False``, or a tiled plane without ``region_yxyx``).
        """
        tiling = self.tiling_of(image, channel_axis)
        if tiling is not None:
            reading = (contrast_limits, channels, channel_axis)
            return self._prepare_tiled(image, reading, tiling, region_yxyx, refine, run)
        return self._prepare_plane(
            image, contrast_limits, channels, channel_axis, refine=refine, run=run
        )

    def _prepare_plane(
        self, image, contrast_limits, channels, channel_axis, *, refine: bool, run: bool
    ) -> Embedding | None:
        """:meth:`prepare` of a plane seen in one pass."""
        key = plane_key(image, contrast_limits, channels, self.predictor.model_key, channel_axis)
        embedding = self.cache.get(key)
        refiners = self.refiners if refine else ()
        if not run:
            if embedding is None or not refiners:
                return embedding
            known = self._planes.find(embedding)
            ready = known is not None and not planes.missing(known, refiners)
            return embedding if ready else None
        if embedding is None:
            embedding = self._embed(key, image, contrast_limits, channels, channel_axis)
        if refiners:
            reading = (contrast_limits, channels, channel_axis)
            planes.prepare(self._planes.with_pixels(embedding, image, *reading), refiners)
        return embedding

    def set_image(
        self,
        image: np.ndarray | None,
        contrast_limits=None,
        channels: Sequence[int] | None = None,
        channel_axis: int | None = None,
        *,
        embedding: Embedding | None = None,
    ) -> Embedding:
        """Make a plane current, embedding and preparing it unless known.

        Parameters
        ----------
        image : array-like, (H, W) or (H, W, C), or None
            One plane, channel axis last, any numeric or bool dtype (for a stack, pass
            one plane). Conversion rules: ``napari_segany.core.image`` and
            ``core.channels`` (an ambiguous 3-D array is refused, never guessed). None
            only with ``embedding``.
        contrast_limits : (low, high) or array (k, 2), optional
            Intensity range mapped to black..white, e.g. the napari layer's
            ``contrast_limits``; default: robust percentiles (uint8 unchanged).
        channels : sequence of 1 to 3 int, optional
            Channels to use as R, G, B (default: the first three); how they are read:
            ``predictor.describe_channels(plane)``.
        channel_axis : int, optional
            The axis holding channels when it is not the last (e.g. 0 for (C, H, W)).
        embedding : Embedding, optional
            The plane's precomputed embedding (e.g. from :meth:`prepare`): made current
            as it is, nothing is embedded. Without ``image``, and unless the plane was
            prepared with its pixels before, everything mode with crops needs the image
            (crops are cut from it) and the model's preparation sees only the embedding
            (the built-in model's objects are then found on the whole plane, never
            zoomed).

        Returns
        -------
        Embedding or None
            The plane's embedding, now current; None for a plane larger than the
            model's frame (:attr:`tiling`): it is kept, and each prompt embeds the
            window it needs (``embedding`` is then not used).

        Raises
        ------
        ImageError
            On an invalid plane or option, or an ``image`` that is not the plane of
            ``embedding``; the previous plane stays current.
        """
        tiling = None if image is None else self.tiling_of(image, channel_axis)
        if tiling is not None:
            self._set_tiled(image, contrast_limits, channels, channel_axis, tiling)
            self._current = None
            return None
        embedding = self._set_plane(image, contrast_limits, channels, channel_axis, embedding)
        self._big = None
        return embedding

    def _set_plane(
        self, image, contrast_limits=None, channels=None, channel_axis=None, embedding=None
    ) -> Embedding:
        """:meth:`set_image` of a plane seen in one pass (or of a window)."""
        if embedding is None:
            if image is None:
                raise ImageError("Give set_image a plane (or a precomputed embedding=).")
            embedding = self._prepare_plane(
                image, contrast_limits, channels, channel_axis, refine=True, run=True
            )
        elif image is not None:
            plane = validate_plane(np.asarray(image), contrast_limits, channels, channel_axis)
            shape = tuple(plane.shape[:2])
            if shape != tuple(embedding.original_hw):
                raise ImageError(
                    f"The image is {shape} but the embedding is for a "
                    f"{tuple(embedding.original_hw)} plane; pass the plane it was made from."
                )
        reading = (contrast_limits, channels, channel_axis)
        self._current = self._planes.with_pixels(embedding, image, *reading)
        return embedding

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
            The decoder's answer after the :attr:`refiners` (which change masks only:
            the scores and low-resolution logits stay the model's).

        Raises
        ------
        NoImageError
            Before :meth:`set_image`.
        PromptError
            On an invalid prompt (nothing changes).
        """
        if self._big is not None:
            return self._segment_tiled(points_yx, labels, box_yxyx, mask_input, multimask)
        return self._segment_plane(points_yx, labels, box_yxyx, mask_input, multimask)

    def _segment_plane(
        self, points_yx, labels, box_yxyx, mask_input, multimask: bool
    ) -> SegmentResult:
        """:meth:`segment` of the current plane seen in one pass (or window)."""
        context = self._current
        if context is None:
            raise NoImageError("No image set: call set_image(plane) before segment(...).")
        result = self.predictor.predict(
            context.embedding, points_yx, labels, box_yxyx, mask_input, multimask
        )
        prompt = Prompt(
            None if points_yx is None else np.asarray(points_yx, dtype=np.float64),
            None if labels is None else np.asarray(labels),
            None if box_yxyx is None else np.asarray(box_yxyx, dtype=np.float64),
            mask_input,
            bool(multimask),
        )
        planes.prepare(context, self.refiners)  # at once where prepare() ran (the widget)
        for refiner in self.refiners:
            result = refiner.refine(result, prompt, context)
        return result

    def __repr__(self) -> str:
        return (
            f"SegAny(model={self.predictor.name!r}, device={str(self.predictor.device)!r}, "
            f"precision={self.predictor.precision!r}, cached_embeddings={len(self.cache)})"
        )
