"""Labels into an OME-Zarr store (NGFF 0.4, zarr format 2, as napari-ome-zarr reads).

Each input is an image group of the store holding ``labels/<name>``: a labels group
with ``multiscales`` metadata (its axes in NGFF order -- time, one other axis, then
z, y, x -- and one level, ``"0"``), ``image-label`` metadata, and the uint32 labels
in chunks of one plane. The labels group is written under a temporary name inside
``labels/`` and renamed into place when complete; ``labels/.zattrs`` lists it.
The image itself is not copied into the store.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from ..core.errors import InputError
from .inputs import Source
from .outputs import Planes, Target, label_axes, label_shape, place, write_table

NGFF_VERSION = "0.4"
AXIS_TYPES = {"T": "time", "Z": "space", "Y": "space", "X": "space"}


def ngff_axes(source: Source) -> str:
    """The labels' axis letters in NGFF order (T, another axis, Z, Y, X).

    Raises
    ------
    InputError
        More than one axis besides T, Z, Y and X (NGFF 0.4 allows one).
    """
    letters = label_axes(source)
    others = [a for a in letters if a not in AXIS_TYPES]
    if len(others) > 1:
        raise InputError(
            f"{source.path}: OME-Zarr labels take one axis besides T, Z, Y and X, but the "
            f"axes are {source.axes!r}; name them with --axes (e.g. TZYX) or write TIFF "
            "files (-o a folder/)."
        )
    return "".join(a for a in "T" + "".join(others) + "ZYX" if a in letters)


def labels_metadata(name: str, axes: str) -> dict:
    """The labels group's ``.zattrs``: ``multiscales`` and ``image-label``."""
    entries = [
        {"name": a.lower(), **({"type": AXIS_TYPES[a]} if a in AXIS_TYPES else {})} for a in axes
    ]
    level = {
        "path": "0",
        "coordinateTransformations": [{"type": "scale", "scale": [1.0] * len(axes)}],
    }
    return {
        "multiscales": [
            {"version": NGFF_VERSION, "name": name, "axes": entries, "datasets": [level]}
        ],
        "image-label": {"version": NGFF_VERSION},
    }


def write_zarr_labels(target: Target, source: Source, planes: Planes, objects=None) -> None:
    """Write ``source``'s labels (and table, when ``target.table`` lies inside the
    labels group) into the store atomically; other tables are written beside."""
    axes = ngff_axes(source)
    shape = tuple(label_shape(source)[label_axes(source).index(a)] for a in axes)
    inside = target.table is not None and target.table.parent == target.labels

    def fill(array, folder: Path) -> None:
        for index, plane in planes:
            place(array, axes, source, index, plane)
        if inside and objects is not None:
            write_table(folder / target.table.name, objects, source.plane_letters)

    store = target.labels.parent.parent.parent  # <store>/<name>/labels/<name>
    write_labels_group(store / target.name, target.name, axes, shape, fill)
    if target.table is not None and not inside and objects is not None:
        write_table(target.table, objects, source.plane_letters)


def write_labels_group(
    image_group: Path, name: str, axes: str, shape: tuple[int, ...], fill: Callable
) -> Path:
    """Write the labels group ``<image_group>/labels/<name>`` atomically; return its path.

    Parameters
    ----------
    image_group : Path
        The image group (created when missing; an existing one keeps its content).
    name : str
    axes : str
        NGFF-ordered letters (T, another, Z, Y, X), one per axis of ``shape``.
    shape : tuple of int
    fill : callable (zarr array, folder) -> None
        Writes the uint32 level "0" (chunks of one plane) and anything else that goes
        inside the group's temporary folder.
    """
    chunks = tuple(n if a in "YX" else 1 for a, n in zip(axes, shape, strict=True))
    labels_group = _group(Path(image_group), "a").require_group("labels")
    folder = Path(image_group) / "labels"
    temporary = folder / f".{name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        group = _group(temporary, "w")
        group.attrs.update(labels_metadata(name, axes))
        fill(_create_array(group, shape, chunks), temporary)
        _swap(temporary, folder / name)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    names = list(labels_group.attrs.asdict().get("labels", []))
    labels_group.attrs["labels"] = [*names, name] if name not in names else names
    return folder / name


def _swap(new: Path, old: Path) -> None:
    """Put folder ``new`` at ``old``'s place (an existing ``old`` is removed after)."""
    aside = None
    if old.exists():
        aside = old.with_name(f".{old.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(old, aside)
    os.replace(new, old)
    if aside is not None:
        shutil.rmtree(aside)


def _zarr_v3() -> bool:
    import zarr

    return int(zarr.__version__.split(".")[0]) >= 3


def _group(path: Path, mode: str):
    """A zarr format 2 group (zarr 2 writes only format 2; zarr 3 is asked for it)."""
    import zarr

    if _zarr_v3():
        return zarr.open_group(str(path), mode=mode, zarr_format=2)
    return zarr.open_group(str(path), mode=mode)


def _create_array(group, shape: tuple[int, ...], chunks: tuple[int, ...]):
    """Level "0": uint32, 0 as fill value, '/' between chunk indices (NGFF 0.4)."""
    if _zarr_v3():
        return group.create_array(
            name="0", shape=shape, chunks=chunks, dtype="uint32", fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )  # fmt: skip
    return group.create_dataset(
        "0", shape=shape, chunks=chunks, dtype="uint32", fill_value=0, dimension_separator="/"
    )
