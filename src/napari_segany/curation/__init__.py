"""Curation of label images: edits by prompts, undo/redo, provenance and replay.

:class:`Curation` edits a label image (from any source) with a SegAny session;
:func:`replay` makes its labels again from the saved record. napari-free: the widget
and scripts use the same code.
"""

from .history import LabelsHistory, Step
from .provenance import ProvenanceError
from .replay import Replayed, replay
from .session import Curation

__all__ = ["Curation", "LabelsHistory", "ProvenanceError", "Replayed", "Step", "replay"]
