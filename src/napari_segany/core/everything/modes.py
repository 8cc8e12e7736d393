"""Everything mode's parameters: which proposer, with which of its parameters.

A session offers SAM's grid (:class:`.grid.GridProposer`) and the proposers its model
declares (``core.plugins.ModelPlugin.proposers``). :func:`split_params` sorts one call's
keyword arguments into the chosen proposer's parameters (its ``params_type``) and
phase 2's :class:`.selection.FilterParams`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from ..errors import InputError
from ..plugins import Proposer
from .selection import FilterParams

AUTO = "auto"


def pick_proposer(proposers: Sequence[Proposer], mode: str, default_mode: str) -> Proposer:
    """The proposer named ``mode`` (``"auto"``: ``default_mode``).

    Raises
    ------
    InputError
        No proposer of that name; the message lists the session's modes.
    """
    if not isinstance(mode, str):
        raise InputError(f"mode must be the name of an everything mode, got {mode!r}.")
    wanted = default_mode if mode == AUTO else mode
    for proposer in proposers:
        if wanted == proposer.name or wanted in getattr(proposer, "aliases", ()):
            return proposer
    names = [AUTO, *(p.name for p in proposers)]
    raise InputError(f"Unknown everything mode {mode!r}; this model offers {names}.")


def param_names(proposer: Proposer) -> set[str]:
    """The names of a proposer's own parameters."""
    return {f.name for f in fields(proposer.params_type)}


def split_params(
    proposer: Proposer, proposers: Sequence[Proposer], **params: Any
) -> tuple[Any, FilterParams]:
    """``(proposer's params, FilterParams)`` of one everything-mode call.

    Parameters of the session's other proposers are accepted and not used (a widget or
    a script may pass the grid's ``points_per_side`` whatever the mode).

    Raises
    ------
    InputError
        On a name no proposer of the session knows, or an invalid value.
    """
    own = param_names(proposer)
    filter_names = {f.name for f in fields(FilterParams)}
    known = set().union(own, filter_names, *(param_names(p) for p in proposers))
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(f"Unknown everything-mode parameter(s) {unknown}; valid: {sorted(known)}.")
    chosen = proposer.params_type(**{k: v for k, v in params.items() if k in own})
    filters = FilterParams(**{k: v for k, v in params.items() if k in filter_names})
    return chosen, filters


class EverythingModes:
    """The everything modes of a session: its proposers, their defaults and parameters.

    Parameters
    ----------
    proposers : sequence of Proposer
        SAM's grid first, then the model's own.
    default_mode : str
        The proposer ``mode="auto"`` picks.
    defaults : mapping
        Parameters used where a call does not give them (the model's, e.g. thresholds
        calibrated for it); :attr:`defaults` may be changed.

    Attributes
    ----------
    clicked_parts : bool
        ``clicked_component_only``'s default: the session sets it where a
        ``clicked_parts`` prompt refiner is active, so the grid's masks follow the rule
        its prompts follow.
    """

    def __init__(
        self, proposers: Sequence[Proposer], default_mode: str, defaults: dict | None = None
    ) -> None:
        self.proposers = tuple(proposers)
        self.default_mode = default_mode
        self.defaults: dict = dict(defaults or {})
        self.clicked_parts = False

    def names(self) -> dict[str, str]:
        """Mode name -> description, the ``"auto"`` choice first."""
        default = self.proposer(AUTO)
        ordered = [default, *(p for p in self.proposers if p is not default)]
        return {p.name: p.description for p in ordered}

    def proposer(self, mode: str = AUTO) -> Proposer:
        """The proposer of ``mode`` (an ``InputError`` naming the modes if unknown)."""
        return pick_proposer(self.proposers, mode, self.default_mode)

    def parameters(self, mode: str = AUTO) -> frozenset[str]:
        """Names of the own parameters of ``mode`` (the thresholds are every mode's)."""
        return frozenset(param_names(self.proposer(mode)))

    def filters(self, mode: str = AUTO) -> dict[str, str]:
        """The phase-2 thresholds meaningful for ``mode`` (name -> short label)."""
        return dict(self.proposer(mode).filters)

    def merged(self, **params: Any) -> dict:
        """What a call with ``params`` runs with: ``params``, then :attr:`defaults`, then
        ``clicked_component_only`` = :attr:`clicked_parts`; SAM's defaults for the rest."""
        return {"clicked_component_only": self.clicked_parts, **self.defaults, **params}

    def plan(self, mode: str = AUTO, **params: Any) -> tuple[Proposer, Any, FilterParams]:
        """``(proposer, its parameters, FilterParams)`` of a call (defaults merged: the
        call's, then :attr:`defaults`, then the proposer's own ``filter_defaults`` --
        phase-2 thresholds that suit its scores, where it declares them --, then SAM's).

        Raises
        ------
        InputError
            An unknown mode or parameter, or an invalid value.
        """
        proposer = self.proposer(mode)
        merged = {**self.mode_defaults(mode), **params}
        chosen, filters = split_params(proposer, self.proposers, **merged)
        return proposer, chosen, filters

    def mode_defaults(self, mode: str = AUTO) -> dict:
        """What a call of ``mode`` runs with when it gives nothing: :attr:`defaults`
        over the proposer's own ``filter_defaults`` (where it declares them)."""
        own = getattr(self.proposer(mode), "filter_defaults", {})
        return {**own, **self.merged()}
