"""Label images to files and back: TIFF or OME-Zarr, written atomically.

>>> from napari_segany import save_labels, load_labels
>>> save_labels(labels, "cells_labels.tif")                        # doctest: +SKIP
>>> save_labels(labels, "cells.ome.zarr", name="nuclei")           # doctest: +SKIP
>>> again = load_labels("cells.ome.zarr", name="nuclei")            # doctest: +SKIP

A path ending in ``.tif``/``.tiff`` is one TIFF (the labels' own integer dtype kept);
one ending in ``.zarr`` is an OME-Zarr store, the labels written as the NGFF 0.4 labels
group ``<store>/labels/<name>`` (uint32, ``multiscales`` and ``image-label`` metadata,
zarr format 2: what napari-ome-zarr and the ``segment-all`` command read and write).
An existing OME-Zarr image store gets the labels beside its image; another labels
group of that name is replaced as a whole. Provenance (``provenance=``) goes into a
JSON sidecar: ``<stem>.segany.json`` beside a TIFF, ``segany.json`` inside the labels
group of a store (:func:`sidecar_path`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .core.errors import InputError
from .core.files import atomic_path
from .core.label_inputs import integer_labels

__all__ = ["load_labels", "save_labels", "sidecar_path"]

TIFF_SUFFIXES = (".tif", ".tiff")
DEFAULT_AXES = {2: "YX", 3: "ZYX", 4: "TZYX"}
SIDECAR_NAME = "segany.json"


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix == ".zarr":
        return "zarr"
    raise InputError(f"{path}: save labels as a .tif/.tiff file or into a .zarr (OME-Zarr) store.")


def _checked(labels: Any, axes: str | None) -> tuple[np.ndarray, str]:
    """The labels as a numpy integer array, and their axis letters."""
    array = integer_labels(labels)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.size and array.min() < 0:
        raise InputError("Labels must not be negative (0 is background, ids are > 0).")
    letters = (axes or DEFAULT_AXES.get(array.ndim, "")).upper()
    if len(letters) != array.ndim or array.ndim < 2:
        raise InputError(
            f"Labels of shape {array.shape} need axes= naming each axis (e.g. 'TZYX'); "
            f"got {axes!r}."
        )
    return array, letters


def sidecar_path(labels_path: str | Path, name: str = "labels") -> Path:
    """Where :func:`save_labels` puts the provenance of ``labels_path``."""
    path = Path(labels_path)
    if _kind(path) == "tiff":
        return path.with_name(path.name[: -len(path.suffix)] + ".segany.json")
    return path / "labels" / name / SIDECAR_NAME


def save_labels(
    labels: Any,
    path: str | Path,
    *,
    axes: str | None = None,
    name: str = "labels",
    provenance: Mapping | None = None,
) -> Path:
    """Write ``labels`` to ``path`` (TIFF or OME-Zarr, see the module docstring).

    Parameters
    ----------
    labels : array (..., H, W) of integers (bool is taken as 0/1)
    path : str or Path
        ``*.tif`` / ``*.tiff``, or an OME-Zarr store ``*.zarr`` (created when missing).
    axes : str, optional
        Axis letters, default ``YX``, ``ZYX`` or ``TZYX`` by dimension; OME-Zarr needs
        NGFF order (T, one other axis, Z, Y, X).
    name : str
        The labels group's name in a store.
    provenance : mapping, optional
        Written as JSON to :func:`sidecar_path` (atomically, with the labels).

    Returns
    -------
    Path
        The TIFF, or the labels group inside the store.

    Raises
    ------
    InputError
        Float or negative labels, another suffix, axes that do not fit, ids beyond
        uint32 for OME-Zarr, or a missing folder (nothing written).
    """
    target = Path(path)
    kind = _kind(target)
    array, letters = _checked(labels, axes)
    if provenance is not None:  # a record that does not serialise fails before writing
        json.dumps(provenance)
    parent = target.parent
    if not parent.is_dir():
        raise InputError(f"{parent} does not exist; create it or save elsewhere.")
    if kind == "tiff":
        _save_tiff(array, letters, target)
    else:
        target = _save_zarr(array, letters, target, name, provenance)
    if provenance is not None and kind == "tiff":
        write_json(sidecar_path(target), provenance)
    return target


def _save_tiff(array: np.ndarray, letters: str, target: Path) -> None:
    import tifffile

    with atomic_path(target) as temporary:
        tifffile.imwrite(temporary, array, photometric="minisblack", metadata={"axes": letters})


def _save_zarr(
    array: np.ndarray, letters: str, store: Path, name: str, provenance: Mapping | None
) -> Path:
    from .batch.ngff import AXIS_TYPES, write_labels_group

    ngff = "".join(a for a in "T" + "".join(set(letters) - set(AXIS_TYPES)) + "ZYX" if a in letters)
    if letters != ngff or len(set(letters)) != len(letters):
        raise InputError(
            f"OME-Zarr labels need their axes in NGFF order (T, one other axis, Z, Y, X), "
            f"e.g. {ngff!r}; got {letters!r}: transpose the labels or save a TIFF."
        )
    if array.size and int(array.max()) > np.iinfo(np.uint32).max:
        raise InputError("OME-Zarr labels are uint32: ids above 4294967295 do not fit.")

    def fill(level, folder: Path) -> None:
        for index in np.ndindex(*array.shape[:-2]):
            level[index] = array[index].astype(np.uint32)
        if provenance is not None:
            write_json(folder / SIDECAR_NAME, provenance)

    return write_labels_group(store, name, letters, tuple(array.shape), fill)


def write_json(path: Path, record: Mapping) -> None:
    """``record`` as indented JSON at ``path``, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")


def load_labels(path: str | Path, name: str | None = None) -> np.ndarray:
    """Read labels written by :func:`save_labels` or ``segment-all`` (numpy array).

    ``path``: a TIFF, or a zarr group holding ``labels/`` (an OME-Zarr store, or an
    image group inside one, as ``segment-all`` writes them); ``name`` picks its labels
    group (default: its only, or first, one).
    """
    source = Path(path)
    if not source.exists():
        raise InputError(f"{source} does not exist.")
    if source.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        return tifffile.imread(source)
    if not source.is_dir():
        raise InputError(f"{source}: read labels from a .tif/.tiff file or a zarr group.")
    import zarr

    group = zarr.open_group(str(source), mode="r")
    names = list(group["labels"].attrs.asdict().get("labels", [])) if "labels" in group else []
    if not names:
        raise InputError(f"{source} holds no OME-Zarr labels group.")
    chosen = name or names[0]
    if chosen not in names:
        raise InputError(f"{source} has no labels {chosen!r}; it has {', '.join(names)}.")
    return np.asarray(group["labels"][chosen]["0"])
