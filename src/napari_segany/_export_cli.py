"""``napari-segany export LABELS --table OUT.csv --coco OUT.json``: the command's body.

LABELS is a label TIFF, a zarr array or an OME-Zarr labels (or image) group, opened
as the batch inputs are (:mod:`.batch.inputs`) and read one plane at a time. The
plane axes are all axes but Y and X, in the file's order; a channel axis (C or S)
must have one entry. Both outputs are written atomically. numpy and the readers are
imported when the command runs, so ``napari-segany --help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

USAGE_KEY = "export_usage"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``export`` subcommand's arguments."""
    parser.add_argument(
        "labels",
        metavar="LABELS",
        help="label image: TIFF, zarr array or OME-Zarr labels group (0 = background)",
    )
    parser.add_argument("--table", metavar="OUT.csv", help="write the per-object CSV table")
    parser.add_argument("--coco", metavar="OUT.json", help="write COCO-style RLE annotations")
    parser.add_argument(
        "--axes", metavar="LETTERS", help="axis letters of LABELS when its own are missing or wrong"
    )
    parser.set_defaults(**{USAGE_KEY: parser.format_usage()})


def run(args: argparse.Namespace) -> int:
    """Write the asked-for exports of ``args.labels``; 2 when none is asked for."""
    from .batch.inputs import open_array, open_source
    from .batch.outputs import check_folder
    from .core.errors import InputError
    from .core.exports import write_coco, write_object_table

    if not args.table and not args.coco:
        sys.stderr.write(getattr(args, USAGE_KEY, ""))
        sys.stderr.write(
            "napari-segany export: error: give --table OUT.csv, --coco OUT.json or both\n"
        )
        return 2
    source = open_source(Path(args.labels), args.axes)
    outputs = [Path(p) for p in (args.table, args.coco) if p]
    for path in outputs:
        if path.is_dir():
            raise InputError(f"{path} is a folder; give a file name for the export.")
        if path.resolve() == Path(args.labels).resolve():
            raise InputError(f"{path} would replace the labels; choose another output path.")
        check_folder(path.parent, path.name)
    with open_array(source) as array:
        labels = PlaneView(array, source)
        if args.table:
            table = write_object_table(labels, args.table)
            _write(f"{args.table}: {len(table)} objects (plane axes: {_axes(source)})")
        if args.coco:
            dataset = write_coco(labels, args.coco, file_name=Path(args.labels).name)
            _write(
                f"{args.coco}: {len(dataset['annotations'])} annotations on "
                f"{len(dataset['images'])} images"
            )
    return 0


class PlaneView:
    """A source's labels as (..., H, W): ``view[index]`` reads one (H, W) plane.

    ``index`` runs over the plane axes (every axis but Y, X and a channel axis), in
    the file's order.
    """

    def __init__(self, array, source) -> None:
        import numpy as np

        from .core.errors import InputError
        from .core.exports import check_labels_dtype

        check_labels_dtype(source.dtype)  # before the channels: a float image has many
        self.array, self.source = array, source
        channel = source.channel_axis
        if channel is not None and source.shape[channel] != 1:
            raise InputError(
                f"{source.path} has {source.shape[channel]} channels (axes {source.axes!r}); "
                "labels have one -- give a label image, or fix its axes with --axes."
            )
        (row, col), plane_shape = source.spatial_axes, source.plane_shape()
        kept = [n for a, n in enumerate(source.shape) if a not in (row, col, channel)]
        self.shape = (*kept, *plane_shape[:2])
        self.dtype = np.dtype(source.dtype)

    def __getitem__(self, index: tuple[int, ...]):
        from .core.stack import get_plane

        source = self.source  # the plane comes back (H, W), or (H, W, 1) with a channel axis
        plane = get_plane(self.array, index, source.spatial_axes, source.channel_axis)
        return plane[..., 0] if plane.ndim == 3 else plane


def _axes(source) -> str:
    """The plane-axis letters, or 'none' for a 2D image."""
    return source.plane_letters or "none"


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
