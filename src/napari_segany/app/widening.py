"""Writes into a Labels layer whose dtype is too narrow: widen with consent, or refuse.

A 0/255 mask opened as a uint8 Labels layer already holds id 255, so the next object
needs 256. Every writer checks the room first and raises
:class:`~napari_segany.core.errors.LabelsDtypeError` before writing anything;
:func:`write_with_room` asks (the widget: a dialog) whether to widen the layer's dtype,
keeping every label, and writes again only with that consent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from napari_segany import _layers
from napari_segany.core.errors import LabelsDtypeError

Written = TypeVar("Written")
Consent = Callable[[LabelsDtypeError], bool]


def write_with_room(write: Callable[[], Written], target: Any, consent: Consent | None) -> Written:
    """``write()``; if ``target`` (a Labels layer) cannot hold its ids, widen with consent.

    Parameters
    ----------
    write : callable
        Writes into ``target`` and raises ``LabelsDtypeError`` before writing anything
        when the ids do not fit.
    target : napari.layers.Labels
    consent : callable or None
        Asked with the error; True widens ``target`` to ``error.wider`` and writes
        again. None (scripts) never widens.

    Raises
    ------
    LabelsDtypeError
        Without consent, or when no integer dtype is wide enough (nothing changed).
    """
    try:
        return write()
    except LabelsDtypeError as error:
        if consent is None or error.wider is None or not consent(error):
            raise
        wider = error.wider
    _layers.widen_labels(target, wider)
    return write()


def widen_question(error: LabelsDtypeError) -> str:
    """The question a dialog asks before widening (``error.wider`` is not None)."""
    top = np.iinfo(error.dtype).max
    return (
        f"Labels layer '{error.layer_name}' stores {error.dtype.name} ids (up to {top}), "
        f"but id {error.needed} is needed.\n\nWiden it to {error.wider.name}? Every label "
        "keeps its value; undo removes the new objects but keeps the wider type.\n"
        "No: nothing is written."
    )
