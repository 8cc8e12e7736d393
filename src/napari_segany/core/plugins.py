"""The plug-in boundary: what a model adds to the general session.

A registry entry names its model's :class:`ModelPlugin` (``ModelEntry.plugin``,
``"package.module:NAME"``); the session loads it and calls only the protocols below,
so general code never names a model:

- :class:`PromptRefiner`: turns the decoder's answer to a prompt into the model's
  answer (e.g. the built-in model snaps a click to its foreground head's object). Its
  per-plane work happens in :meth:`PromptRefiner.prepare`, which the session runs with
  the plane's embedding (``SegAny.prepare``, a background job in the widget), never in
  :meth:`PromptRefiner.refine`, which runs on every click.
- :class:`Proposer`: everything mode's candidates of a plane (SAM's point grid is one,
  :class:`~napari_segany.core.everything.grid.GridProposer`); selection, stacks and
  the widget serve every proposer alike.

Each gets a :class:`PlaneContext`: the plane's embedding, its model RGB, an embedding
store of the plane's views (each embedded once per plane and kept) and the state the
plug-ins prepared for it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .channels import COLOUR_RULE, ChannelRule
from .errors import InputError

if TYPE_CHECKING:
    from .embeddings import Embedding, ViewEmbeddings
    from .everything.candidates import GridCandidates
    from .predictor import Predictor
    from .progress import Progress
    from .results import SegmentResult


@dataclass(frozen=True)
class Prompt:
    """A prompt set as the session validated it, in plane pixels (row, col).

    Attributes
    ----------
    points_yx : numpy.ndarray, (P, 2) float64, or None
    labels : numpy.ndarray, (P,) int64, or None
        1 positive, 0 negative.
    boxes_yxyx : numpy.ndarray, (4,) or (N, 4) float64, or None
        As given: (N, 4) means N objects (results with a leading N axis).
    mask_input : numpy.ndarray or None
        Low-resolution logits refined by this prompt.
    multimask : bool
    """

    points_yx: np.ndarray | None
    labels: np.ndarray | None
    boxes_yxyx: np.ndarray | None
    mask_input: np.ndarray | None
    multimask: bool

    @property
    def clicks_only(self) -> bool:
        """Points without a box and without ``mask_input``."""
        return self.points_yx is not None and self.boxes_yxyx is None and self.mask_input is None


@dataclass
class PlaneContext:
    """One plane as the plug-ins see it.

    Attributes
    ----------
    predictor : Predictor
        The session's predictor (decode more prompts with it; never embed the plane).
    embedding : Embedding
        The plane's embedding.
    rgb : numpy.ndarray, (H, W, 3) uint8, or None
        The plane as the model sees it; None when only the embedding is known
        (``SegAny.set_image(None, embedding=...)``, without the plane).
    views : ViewEmbeddings
        Embeddings of views of this plane (tiles, the plane turned, ...), each made
        once and kept with the plane: :meth:`PromptRefiner.prepare` and proposers may
        ``views.embed(rgb)``; :meth:`PromptRefiner.refine` only ``views.get(rgb)``.
    prepared : dict
        State the refiners prepared for this plane, by refiner name; proposers may
        keep their per-plane work here too, under a key of their own (the AIS
        proposer keeps its decoder maps).
    """

    predictor: Predictor
    embedding: Embedding
    rgb: np.ndarray | None
    views: ViewEmbeddings
    prepared: dict[str, Any] = field(default_factory=dict)

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the plane."""
        return tuple(int(v) for v in self.embedding.original_hw)


@runtime_checkable
class PromptRefiner(Protocol):
    """A rule applied to every prompt's masks after the decoder.

    Attributes
    ----------
    name : str
        Unique among a model's refiners (``SegAny(refine=[...])`` picks by name).
    """

    name: str

    def prepare(self, plane: PlaneContext) -> Any:
        """Per-plane state (kept in ``plane.prepared[name]``), or None; may embed views."""

    def refine(self, result: SegmentResult, prompt: Prompt, plane: PlaneContext) -> SegmentResult:
        """The refined answer; must not embed anything."""


@runtime_checkable
class Proposer(Protocol):
    """Everything mode's candidates of one plane.

    Attributes
    ----------
    name : str
        The ``mode`` users pick (``"grid"``, ...).
    description : str
        One line for the widget.
    params_type : type
        Frozen dataclass of the proposer's own parameters, validated on construction.
    filters : mapping of str to str
        The phase-2 thresholds (``FilterParams`` names) that mean something for its
        candidates' scores, each with a short label saying what it keeps (the widget
        shows only these; the others keep the session's defaults).
    aliases : tuple of str, optional
        Former names still accepted as ``mode`` (e.g. the built-in model's
        ``"foreground"``, now ``"ais"``); not listed as modes.
    """

    name: str
    description: str
    params_type: type
    filters: Mapping[str, str]

    def propose(
        self, plane: PlaneContext, params: Any
    ) -> Generator[Progress, None, GridCandidates]:
        """Phase 1 of everything mode on the plane (a generator of progress)."""


@dataclass(frozen=True)
class ModelPlugin:
    """What a model adds to the general session.

    Attributes
    ----------
    refiners : tuple of PromptRefiner
        Applied in order to every prompt's masks (``SegAny(refine="auto")``).
    proposers : tuple of Proposer
        Everything-mode proposers beyond SAM's grid.
    default_mode : str
        Everything mode's ``mode="auto"``.
    everything_defaults : mapping
        Everything-mode parameters that replace SAM's defaults for this model.
    channel_rule : ChannelRule
        How the model reads a plane of two channels (``core.channels``; SAM's weights:
        ``(c0, c1, 0)`` as R, G, B).
    max_upscale : float or None
        The largest enlargement of a plane into the model frame (smaller planes are
        padded, so their objects keep the scale the model was trained at); None: SAM's
        rule, the plane's long side fills the frame.
    """

    refiners: tuple[PromptRefiner, ...] = ()
    proposers: tuple[Proposer, ...] = ()
    default_mode: str = "grid"
    everything_defaults: Mapping[str, Any] = field(default_factory=dict)
    channel_rule: ChannelRule = COLOUR_RULE
    max_upscale: float | None = None


NO_PLUGIN = ModelPlugin()
REFINE_CHOICES = ("auto", "none")


def choose_refiners(
    plugin: ModelPlugin, refine: str | Sequence[str | PromptRefiner], model_name: str = ""
) -> tuple[PromptRefiner, ...]:
    """The refiners ``refine`` names: ``"auto"`` (the plug-in's), ``"none"``, or a
    sequence of the plug-in's refiner names and refiner objects, in that order.

    Raises
    ------
    InputError
        An unknown choice or name (the message lists the model's refiners).
    """
    own = {r.name: r for r in plugin.refiners}
    known = sorted(own) or "none"
    if isinstance(refine, str):
        if refine not in REFINE_CHOICES:
            raise InputError(
                f"refine must be one of {REFINE_CHOICES} or a list of refiner names "
                f"(model {model_name!r} has {known}), got {refine!r}."
            )
        return tuple(own.values()) if refine == "auto" else ()
    unknown = [r for r in refine if isinstance(r, str) and r not in own]
    if unknown:
        raise InputError(f"Unknown refiner(s) {unknown} for model {model_name!r}; it has {known}.")
    return tuple(own[r] if isinstance(r, str) else r for r in refine)


def load_plugin(spec: str) -> ModelPlugin:
    """The :class:`ModelPlugin` named ``"package.module:NAME"`` (empty: none).

    Raises
    ------
    InputError
        The module or name does not exist, or is not a ``ModelPlugin``.
    """
    if not spec:
        return NO_PLUGIN
    module_name, _, attribute = spec.partition(":")
    try:
        plugin = getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise InputError(f"The model plug-in {spec!r} cannot be loaded: {error}.") from error
    if not isinstance(plugin, ModelPlugin):
        raise InputError(f"{spec!r} is a {type(plugin).__name__}, not a ModelPlugin.")
    return plugin
