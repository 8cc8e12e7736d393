"""Batch inputs: names and globs, and lazy sources read one plane at a time.

A source is a TIFF file (its first series, finest level), a zarr array, or an
OME-Zarr image group (its finest level, the first dataset of its ``multiscales``).
Opening one reads its metadata only; :func:`read_plane` reads one plane (through
tifffile's zarr view of the TIFF, or a zarr slice), so a worker reads just the plane
its unit needs and the client never holds a whole file.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.stack import get_plane, plane_axes, plane_indices

SPATIAL = ("Y", "X")
CHANNEL_LETTERS = ("C", "S")
GLOB_CHARACTERS = "*?["
ZARR_SUFFIXES = (".ome.zarr", ".zarr")
TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
DEFAULT_ZARR_AXES = {2: "YX", 3: "ZYX"}  # plain zarr arrays without --axes
logger = logging.getLogger(__name__)


def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """Paths of the inputs: each glob expanded (sorted), other names kept as given.

    Raises
    ------
    InputError
        A glob that matches nothing (named in the message).
    """
    paths: list[Path] = []
    for pattern in patterns:
        if any(c in pattern for c in GLOB_CHARACTERS) and not Path(pattern).exists():
            found = sorted(glob.glob(pattern, recursive=True))
            if not found:
                raise InputError(
                    f"No file matches {pattern!r}; check the pattern (quote it so the "
                    "shell passes it on unexpanded) or name the files."
                )
            paths += [Path(name) for name in found]
        else:
            paths.append(Path(pattern))
    return paths


def is_zarr_path(path: Path) -> bool:
    """A zarr store, array or group (a folder, or a name ending in .zarr)."""
    return path.is_dir() or str(path).rstrip("/").lower().endswith(ZARR_SUFFIXES)


def base_name(path: Path) -> str:
    """The input's name without its TIFF or zarr suffixes (``a.ome.tif`` -> ``a``).

    For a path inside a zarr store (``plate.zarr/0``) the store's name is used.
    """
    parts = Path(os.path.abspath(path)).parts
    named = [p for p in parts if p.lower().endswith(ZARR_SUFFIXES)]
    name = named[-1] if named and not parts[-1].lower().endswith(TIFF_SUFFIXES) else parts[-1]
    for suffix in (*ZARR_SUFFIXES, *TIFF_SUFFIXES):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def layout(axes: str, shape: Sequence[int]) -> tuple[tuple[int, int], int | None]:
    """Spatial axes (Y, X) and the channel axis (C or S) from axis letters."""
    if not all(letter in axes for letter in SPATIAL):
        raise InputError(f"Axes {axes!r} need a Y and an X axis (e.g. --axes ZYX).")
    channels = [axes.index(c) for c in CHANNEL_LETTERS if c in axes]
    if len(channels) > 1:
        raise InputError(f"Axes {axes!r} have two channel axes (C and S); name one of them.")
    return (axes.index("Y"), axes.index("X")), (channels[0] if channels else None)


def check_axes(axes: str, shape: Sequence[int]) -> str:
    """Upper-case ``axes`` after checking they fit ``shape`` (one distinct letter each)."""
    axes = axes.upper()
    if len(axes) != len(shape) or len(set(axes)) != len(axes):
        raise InputError(
            f"Axes {axes!r} do not fit the image of shape {tuple(shape)}: give one distinct "
            f"letter per dimension with --axes, e.g. {'ZYX' if len(shape) == 3 else 'TZYX'}."
        )
    layout(axes, shape)
    return axes


@dataclass(frozen=True)
class Source:
    """One input, described without its pixels (pickled to the workers).

    Attributes
    ----------
    path : str
        The file, or the zarr array or group, as given.
    kind : {"tiff", "zarr"}
    array_path : str
        The array inside a zarr group ("" for a TIFF or a zarr array itself).
    axes : str
        One upper-case letter per dimension (Y and X, optionally C or S, plane axes).
    shape : tuple of int
    dtype : str
    name : str
        Base name of the outputs (:func:`base_name`).
    """

    path: str
    kind: str
    array_path: str
    axes: str
    shape: tuple[int, ...]
    dtype: str
    name: str

    @property
    def spatial_axes(self) -> tuple[int, int]:
        return layout(self.axes, self.shape)[0]

    @property
    def channel_axis(self) -> int | None:
        return layout(self.axes, self.shape)[1]

    @property
    def plane_letters(self) -> str:
        """Letters of the plane axes, in axis order."""
        axes = plane_axes(len(self.shape), self.spatial_axes, self.channel_axis)
        return "".join(self.axes[a] for a in axes)

    def indices(self) -> list[tuple[int, ...]]:
        """Every plane index, in C order (the in-process run's order)."""
        return list(plane_indices(self.shape, self.spatial_axes, self.channel_axis))

    def plane_shape(self) -> tuple[int, ...]:
        """(H, W) or (H, W, C) of a plane as :func:`read_plane` returns it."""
        (row, col), channel = self.spatial_axes, self.channel_axis
        extra = () if channel is None else (self.shape[channel],)
        return (self.shape[row], self.shape[col], *extra)


def open_source(path: Path, axes: str | None = None) -> Source:
    """Describe an input (metadata only); ``axes`` overrides the file's.

    Raises
    ------
    InputError
        Missing or unreadable input, or axes that do not fit it.
    """
    if is_zarr_path(path):
        return _open_zarr(path, axes)
    import tifffile

    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file; give a TIFF image or zarr.")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype, found = tuple(series.shape), series.dtype, series.axes
    except (tifffile.TiffFileError, ValueError, IndexError, OSError) as error:
        raise InputError(f"{path} could not be read as TIFF ({error}).") from error
    letters = check_axes(axes or found, shape)
    return Source(str(path), "tiff", "", letters, shape, np.dtype(dtype).str, base_name(path))


def _open_zarr(path: Path, axes: str | None) -> Source:
    import zarr

    if not path.exists():
        raise InputError(f"{path} does not exist; give a TIFF image, a zarr array or OME-Zarr.")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as error:  # zarr raises several types for a folder it cannot read
        raise InputError(f"{path} could not be opened as zarr ({error}).") from error
    array_path, found = "", None
    if not hasattr(node, "shape"):  # a group: OME-Zarr's finest level
        array_path, found = _finest_level(path, node.attrs.asdict())
        node = node[array_path]
    shape = tuple(node.shape)
    found = found or DEFAULT_ZARR_AXES.get(len(shape))
    if axes is None and found is None:
        raise InputError(
            f"{path} is a zarr array of shape {shape} without axis names; give them with "
            "--axes, e.g. --axes TZYX."
        )
    letters = check_axes(axes or found, shape)
    return Source(
        str(path), "zarr", array_path, letters, shape, np.dtype(node.dtype).str, base_name(path)
    )


def _finest_level(path: Path, attrs: dict) -> tuple[str, str | None]:
    """(array path, axis letters) of an OME-Zarr image group's first dataset."""
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        raise InputError(
            f"{path} is a zarr group without OME-Zarr 'multiscales' metadata; give the "
            "path of an array inside it, or of an OME-Zarr image."
        )
    first = multiscales[0]
    names = [a["name"] if isinstance(a, dict) else a for a in first.get("axes", [])]
    return str(first["datasets"][0]["path"]), ("".join(names).upper() or None)


@contextlib.contextmanager
def open_array(source: Source) -> Iterator[object]:
    """The source's pixels as a lazily read array (a zarr view), open for the block.

    A TIFF is read through tifffile's zarr view; where the installed tifffile and zarr
    do not fit together (tifffile >= 2025.5.21 needs zarr 3 for it) the whole series
    is read instead -- correct, only slower.
    """
    import zarr

    if source.kind == "zarr":
        node = zarr.open(source.path, mode="r")
        yield node[source.array_path] if source.array_path else node
        return
    import tifffile

    with tifffile.TiffFile(source.path) as tif:
        series = tif.series[0]
        try:
            store = series.aszarr(level=0)
            array = zarr.open(store, mode="r")
        except (ValueError, TypeError, ImportError) as error:
            logger.info("%s: reading the whole series (%s)", source.path, error)
            yield series.asarray()
            return
        try:
            yield array
        finally:
            store.close()


def read_plane(source: Source, index: tuple[int, ...]) -> np.ndarray:
    """One plane, (H, W) or (H, W, C) channels last, of the source's dtype."""
    with open_array(source) as array:
        return get_plane(array, index, source.spatial_axes, source.channel_axis)


def identity(source: Source) -> dict:
    """What identifies the input's content cheaply: its path, byte size and newest
    modification time (every file of a zarr array)."""
    root = Path(source.path) / source.array_path if source.kind == "zarr" else Path(source.path)
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
    stats = [p.stat() for p in files]
    return {
        "path": str(root.resolve()),
        "files": len(stats),
        "bytes": sum(s.st_size for s in stats),
        "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
        "shape": list(source.shape),
        "dtype": source.dtype,
        "axes": source.axes,
    }
