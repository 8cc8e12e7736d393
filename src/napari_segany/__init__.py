"""napari-segany: Segment Anything (SAM) for microscopy in napari.

Importing this package is cheap: torch and the model code load only when a public
name such as :class:`SegAny` is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "SegAny": "napari_segany.api",
    "SegmentResult": "napari_segany.api",
    "SegAnyError": "napari_segany.core.errors",
    "SmallObjectsWarning": "napari_segany.core.errors",
    "segment_layers": "napari_segany.scripting",
    "save_labels": "napari_segany.saving",
    "load_labels": "napari_segany.saving",
    "Curation": "napari_segany.curation",
    "replay": "napari_segany.curation",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from napari_segany.api import SegAny as SegAny
    from napari_segany.api import SegmentResult as SegmentResult
    from napari_segany.core.errors import SegAnyError as SegAnyError
    from napari_segany.core.errors import SmallObjectsWarning as SmallObjectsWarning
    from napari_segany.curation import Curation as Curation
    from napari_segany.curation import replay as replay
    from napari_segany.saving import load_labels as load_labels
    from napari_segany.saving import save_labels as save_labels
    from napari_segany.scripting import segment_layers as segment_layers


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_segany' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
