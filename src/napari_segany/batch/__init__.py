"""Batch everything-mode runs: many inputs, plane by plane, here or on a dask cluster.

``napari-segany segment-all INPUT... -o OUTPUT [--scheduler local[:N] | ADDRESS]``
(:mod:`napari_segany._segment_all`) runs :func:`run_batch`: inputs are TIFF files,
globs, zarr arrays or OME-Zarr images read one plane at a time (:mod:`.inputs`); each
plane is a unit (:mod:`.units`) whose result is saved as a part (:mod:`.parts`) so a
rerun does only what is missing; the client numbers each input's planes as the
in-process run does (:mod:`.assemble`) and writes label TIFFs or an OME-Zarr store
(:mod:`.outputs`, :mod:`.ngff`). dask, zarr and tqdm are imported when a run needs them.
"""

from __future__ import annotations

from .runner import BatchRequest, run_batch
from .units import ModelSpec, Settings

__all__ = ["BatchRequest", "ModelSpec", "Settings", "run_batch"]
