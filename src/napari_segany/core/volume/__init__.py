"""Objects through a stack's z or t axis (Qt-free): per-object tracks of slice masks
(:mod:`.tracks`), the projection rule that prompts one slice from the last
(:mod:`.projection`) and the walks from prompted slices (:mod:`.propagation`). The
public entry point is ``SegAny.open_volume`` (``napari_segany.volume_api``)."""

from .projection import ProjectionRules
from .propagation import walk
from .tracks import SliceMask, SlicePrompt, Track, paint_slice

__all__ = ["ProjectionRules", "SliceMask", "SlicePrompt", "Track", "paint_slice", "walk"]
