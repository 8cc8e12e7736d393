"""Where a batch's results go: one label TIFF, a folder of them, or an OME-Zarr store.

:func:`plan_outputs` reads ``-o``: a name ending in ``.zarr`` is an OME-Zarr store
(:mod:`.ngff`); one ending in ``/``, an existing folder (with several inputs) or any
name given several inputs is a folder with one label TIFF per input (the input's file
name; ``<name>.tif`` for zarr inputs); otherwise one label TIFF. Every file is written
to a temporary name beside it and renamed when complete.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.files import atomic_path, write_problem
from .inputs import CHANNEL_LETTERS, ZARR_SUFFIXES, Source

TABLE_HEADER = [
    "label", "area", "visible_area", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1",
    "predicted_iou", "stability_score", "point_y", "point_x",
    "crop_y0", "crop_x0", "crop_y1", "crop_x1",
]  # fmt: skip
Planes = Iterable[tuple[tuple[int, ...], np.ndarray]]  # (plane index, (H, W) stack ids)


@dataclass(frozen=True)
class Target:
    """Where one input's results go.

    Attributes
    ----------
    kind : {"tiff", "zarr"}
    labels : Path
        The label TIFF, or the labels group inside the store.
    table : Path or None
        The per-object CSV (None: not asked for).
    name : str
        The input's base name (the labels group's name in a store).
    """

    kind: str
    labels: Path
    table: Path | None
    name: str


@dataclass(frozen=True)
class OutputLayout:
    """The run's output, read from ``-o`` (see the module docstring)."""

    kind: str  # "file", "folder" or "zarr"
    root: Path
    csv: str | None

    @property
    def parts(self) -> Path:
        """The work folder of unfinished units, beside the output."""
        root = Path(os.path.abspath(self.root))
        return root.with_name(root.name + ".parts")

    def target(self, source: Source) -> Target:
        """Where ``source``'s labels and table go."""
        if self.kind == "file":
            table = None if self.csv is None else Path(self.csv or self.root.with_suffix(".csv"))
            return Target("tiff", self.root, table, source.name)
        table = None if not self.csv else Path(self.csv) / f"{source.name}.csv"
        if self.kind == "zarr":
            labels = self.root / source.name / "labels" / source.name
            if self.csv == "":
                table = labels / "objects.csv"
            return Target("zarr", labels, table, source.name)
        file_name = Path(source.path).name if source.kind == "tiff" else f"{source.name}.tif"
        if self.csv == "":
            table = self.root / f"{source.name}.csv"
        return Target("tiff", self.root / file_name, table, source.name)


def plan_outputs(output: str, n_inputs: int, table: str | None) -> OutputLayout:
    """Read ``-o`` (and ``--csv``) for ``n_inputs`` inputs; create an output folder.

    Raises
    ------
    InputError
        A file name for several inputs, a missing parent folder, an unwritable one.
    """
    root = Path(output)
    if output.rstrip("/").lower().endswith(ZARR_SUFFIXES):
        kind = "zarr"
    elif output.endswith(("/", os.sep)) or n_inputs > 1:
        kind = "folder"
    else:
        kind = "file"
    if kind == "folder" and root.suffix.lower() in (".tif", ".tiff") and not root.is_dir():
        raise InputError(
            f"{n_inputs} inputs need a folder or an OME-Zarr store as the output, not "
            f"{output}; e.g. -o {root.with_suffix('')}/ or -o {root.with_suffix('.ome.zarr')}."
        )
    if kind == "file" and root.is_dir():
        raise InputError(
            f"{root} is a folder; give a file name, e.g. {root / 'labels.tif'}, or end it "
            "with / to write one labels file per input into it."
        )
    check_folder(root.parent, root.name)
    if kind == "folder":
        root.mkdir(exist_ok=True)
        check_folder(root, "the labels files")
    if table:
        check_folder(Path(table) if kind != "file" else Path(table).parent, "the tables")
    return OutputLayout(kind, root, table)


def check_folder(folder: Path, what: str) -> None:
    """Raise :class:`InputError` unless ``folder`` exists and takes new files."""
    folder = Path(os.path.abspath(folder))
    if not folder.is_dir():
        raise InputError(
            f"The output folder {folder} does not exist; create it or choose another path "
            f"for {what}."
        )
    error = write_problem(folder)
    if error is not None:
        raise InputError(
            f"Cannot write into the output folder {folder} ({error.strerror or error}); "
            "choose a writable folder."
        ) from error


def label_axes(source: Source) -> str:
    """The labels' axis letters: the input's without its channel axis."""
    return "".join(a for a in source.axes if a not in CHANNEL_LETTERS)


def label_shape(source: Source) -> tuple[int, ...]:
    return tuple(n for a, n in zip(source.axes, source.shape) if a not in CHANNEL_LETTERS)


def place(array, axes: str, source: Source, index: Sequence[int], plane: np.ndarray) -> None:
    """Store an (H, W) plane of ``source`` at ``index`` of ``array`` (axes ``axes``)."""
    selector: list = [slice(None)] * len(axes)
    for letter, position in zip(source.plane_letters, index):
        selector[axes.index(letter)] = int(position)
    array[tuple(selector)] = plane if axes.index("Y") < axes.index("X") else plane.T


def label_dtype(top: int) -> type:
    """The dtype of a label TIFF whose largest id is ``top``: uint16, or uint32 above."""
    return np.uint16 if top < 2**16 else np.uint32


def write_tiff(path: Path, source: Source, planes: Planes, top: int) -> None:
    """Write a label TIFF atomically, plane by plane (uint16, or uint32 above 65535).

    Parameters
    ----------
    path : Path
    source : Source
        The input (its axes and shape, channel axis dropped, are the labels').
    planes : iterable of (index, (H, W) array)
        Every plane's stack ids.
    top : int
        The largest id present (chooses the dtype as the in-process run does).
    """
    import tifffile

    axes = label_axes(source)
    dtype = label_dtype(top)
    with atomic_path(path) as temporary:
        image = tifffile.memmap(
            temporary,
            shape=label_shape(source),
            dtype=dtype,
            photometric="minisblack",  # labels, even of 3 or 4 planes
            metadata={"axes": axes},
        )
        for index, plane in planes:
            place(image, axes, source, index, plane)
        image.flush()
        del image


def write_table(path: Path, objects, plane_axes: Sequence[str]) -> None:
    """The per-object CSV (one row per object; ``plane_<axis>`` columns for stacks)."""
    header = [TABLE_HEADER[0], *[f"plane_{a}" for a in plane_axes], *TABLE_HEADER[1:]]
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for o in objects:
            writer.writerow(
                [
                    o.label,
                    *o.plane,
                    o.area,
                    o.visible_area,
                    *o.bbox_yxyx,
                    f"{o.predicted_iou:.6g}",
                    f"{o.stability_score:.6g}",
                    f"{o.point_yx[0]:.2f}",
                    f"{o.point_yx[1]:.2f}",
                    *o.crop_box_yxyx,
                ]
            )


def take(array, axes: str, source: Source, index: Sequence[int]) -> np.ndarray:
    """The (H, W) plane of ``source`` at ``index`` of a label stack (inverse of :func:`place`)."""
    selector: list = [slice(None)] * len(axes)
    for letter, position in zip(source.plane_letters, index):
        selector[axes.index(letter)] = int(position)
    plane = np.asarray(array[tuple(selector)])
    return plane if axes.index("Y") < axes.index("X") else plane.T
