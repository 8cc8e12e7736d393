"""``napari-segany segment-all``: everything mode on a TIFF stack into a label TIFF.

Kept apart from ``cli.py`` so the parser stays short; torch, tifffile and the model are
imported inside :func:`run` only.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

SPATIAL = ("Y", "X")
CHANNEL_LETTERS = ("C", "S")

# (flag, type, help) of the everything-mode parameters, SAM's meanings. Not given: the
# model's defaults (SegAny.everything.merged; for builtin the objects of its
# foreground head, thresholds off), else SAM's, shown in the help.
EVERYTHING_OPTIONS = [
    (
        "--mode",
        str,
        "auto (the model's), grid (SAM's point grid), ais (a model's decoder: "
        "builtin, micro-sam *_lm / *_em_organelles), apg (micro-sam's decoder prompting SAM)",
    ),
    ("--head-zoom", int, "builtin ais: tiles per side 1-4, 0 = automatic (default: 0)"),
    ("--foreground-threshold", float, "ais/apg: min foreground probability (default: 0.5)"),
    ("--center-distance-threshold", float, "ais/apg: seeds below this centre distance (0.5)"),
    ("--boundary-distance-threshold", float, "ais/apg: seeds below this boundary distance (0.5)"),
    ("--min-size", int, "ais/apg: drop objects smaller than this (ais: 0, apg: 25)"),
    ("--nms-threshold", float, "apg: mask IoU above which duplicates go (default: 0.9)"),
    ("--points-per-side", int, "grid points along each side (default: 32)"),
    ("--points-per-batch", int, "points decoded at once (default: 64)"),
    ("--pred-iou-thresh", float, "keep masks with predicted IoU above (SAM: 0.88; builtin: 0)"),
    ("--stability-score-thresh", float, "keep masks this stable (SAM: 0.95; builtin: 0 = off)"),
    ("--stability-score-offset", float, "logit offset of the stability score (default: 1)"),
    ("--box-nms-thresh", float, "box IoU above which duplicates go (SAM: 0.7; builtin: 1 = off)"),
    ("--crop-n-layers", int, "extra layers of image crops (default: 0)"),
    ("--crop-nms-thresh", float, "box NMS threshold across crops (default: 0.7)"),
    ("--crop-overlap-ratio", float, "crop overlap (default: 512/1500)"),
    ("--crop-n-points-downscale-factor", int, "fewer points per crop layer (default: 1)"),
    ("--min-mask-region-area", int, "fill holes / drop islands below this area (default: 0)"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``segment-all`` subcommand."""
    parser.add_argument("input", metavar="IN.tif", help="TIFF or OME-TIFF image (2D to 5D)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.tif", help="label TIFF")
    parser.add_argument(
        "--model", help="registry name (default: builtin, or the architecture of --checkpoint)"
    )
    parser.add_argument("--checkpoint", help="local checkpoint file (works offline)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument(
        "--axes", help="axis letters of the input, e.g. ZYX or TCYX (default: from the file)"
    )
    parser.add_argument(
        "--contrast-limits",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="intensities mapped to black and white (default: robust percentiles)",
    )
    parser.add_argument("--channels", type=int, nargs="+", help="1 to 3 channels used as RGB")
    for flag, kind, text in EVERYTHING_OPTIONS:
        parser.add_argument(flag, type=kind, default=None, help=text)
    parser.add_argument(
        "--use-m2m",
        action="store_true",
        help="grid: decode each candidate again with its own mask as the prompt (SAM 2's m2m)",
    )
    parser.add_argument(
        "--box-refinement",
        action="store_true",
        help="apg: prompt SAM once more with each mask's box (micro-sam's box refinement)",
    )
    parser.add_argument(
        "--link",
        nargs="?",
        const="overlap",
        default=False,
        choices=["overlap", "propagation"],
        help="link objects across planes along the last plane axis: by overlap (the "
        "default rule), or by propagation (carried onto the next plane by the model)",
    )
    parser.add_argument("--link-iou", type=float, default=0.5, help="min IoU to link (0.5)")
    parser.add_argument(
        "--csv",
        nargs="?",
        const="",
        metavar="TABLE.csv",
        help="write the per-object table (default name: OUT.csv)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``segment-all``; errors are :class:`SegAnyError` with a clear message."""
    output, table = _outputs(args)
    data, axes = _read(Path(args.input), args.axes)
    spatial_axes, channel_axis = _layout(axes, data.shape)

    from .api import SegAny
    from .core.registry import DEFAULT_MODEL

    if args.checkpoint and not args.model:  # the checkpoint's own architecture
        source, checkpoint = args.checkpoint, None
    else:
        source, checkpoint = args.model or DEFAULT_MODEL, args.checkpoint
    session = SegAny(source, checkpoint=checkpoint, device=args.device, precision=args.precision)
    limits, channels = args.contrast_limits, args.channels
    names = [flag[2:].replace("-", "_") for flag, *_ in EVERYTHING_OPTIONS]
    params = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    params.update({flag: True for flag in ("use_m2m", "box_refinement") if getattr(args, flag)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = session.segment_everything_stack(
            data,
            spatial_axes,
            channel_axis,
            limits,
            channels,
            link=args.link,
            link_iou=args.link_iou,
            on_progress=None if args.quiet else _ProgressBar(),
            **params,
        )
    if not args.quiet:
        sys.stderr.write("\n")
    _report_warnings(caught)
    _write_labels(output, result.labels, axes)
    if table is not None:
        _write_table(table, result.objects, [a for a in axes if a not in "YX" + "CS"])
    sys.stdout.write(f"{output}: {len(result.objects)} objects\n")
    return 0


def _report_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Objects too small for one pass: one line each on stderr. An empty result was
    logged there already when it happened; other warnings show as Python shows them."""
    from .core.errors import SmallObjectsWarning
    from .core.everything import EmptyResultWarning

    for note in caught:
        if issubclass(note.category, SmallObjectsWarning):
            sys.stderr.write(f"napari-segany: warning: {note.message}\n")
        elif not issubclass(note.category, EmptyResultWarning):
            warnings.showwarning(note.message, note.category, note.filename, note.lineno)


def _outputs(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """Output paths, refusing existing files unless --overwrite and folders that do not
    exist or cannot be written (checked before any work)."""
    from .core.errors import InputError

    output = Path(args.output)
    table = None
    if args.csv is not None:
        table = Path(args.csv) if args.csv else output.with_suffix(".csv")
    for path in (output, table):
        if path is not None and path.is_dir():
            raise InputError(f"{path} is a folder; give a file name, e.g. {path / 'labels.tif'}.")
        if path is not None and path.exists() and not args.overwrite:
            raise InputError(f"{path} exists; pass --overwrite to replace it.")
        if path is not None:
            _check_folder(path)
    if Path(args.input).resolve() == output.resolve():
        raise InputError("The output would replace the input image; choose another -o path.")
    return output, table


def _check_folder(path: Path) -> None:
    """Raise :class:`InputError` unless ``path``'s folder exists and takes a new file."""
    from .core.errors import InputError
    from .core.files import write_problem

    folder = path.parent.resolve()
    if not folder.is_dir():
        raise InputError(
            f"The output folder {folder} does not exist; create it or choose another path "
            f"for {path.name}."
        )
    error = write_problem(folder)
    if error is not None:
        raise InputError(
            f"Cannot write into the output folder {folder} ({error.strerror or error}); "
            "choose a writable folder."
        ) from error


def _read(path: Path, axes: str | None):
    """(array, axis letters) of the first series of a TIFF file."""
    import tifffile

    from .core.errors import InputError

    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file; give a TIFF image.")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data, found = series.asarray(), series.axes
    except (tifffile.TiffFileError, ValueError, IndexError) as error:
        raise InputError(f"{path} could not be read as TIFF ({error}).") from error
    axes = (axes or found).upper()
    if len(axes) != data.ndim or len(set(axes)) != len(axes):
        raise InputError(
            f"Axes {axes!r} do not fit the image of shape {data.shape}: give one distinct "
            f"letter per dimension with --axes, e.g. {'ZYX' if data.ndim == 3 else 'TZYX'}."
        )
    return data, axes


def _layout(axes: str, shape) -> tuple[tuple[int, int], int | None]:
    """Spatial axes (Y, X) and the channel axis (C or S) from axis letters."""
    from .core.errors import InputError

    if not all(letter in axes for letter in SPATIAL):
        raise InputError(f"Axes {axes!r} need a Y and an X axis (e.g. --axes ZYX).")
    channels = [axes.index(c) for c in CHANNEL_LETTERS if c in axes]
    if len(channels) > 1:
        raise InputError(f"Axes {axes!r} have two channel axes (C and S); name one of them.")
    return (axes.index("Y"), axes.index("X")), (channels[0] if channels else None)


def _write_labels(path: Path, labels, axes: str) -> None:
    """Write the label TIFF atomically (an existing file is replaced only when done)."""
    import numpy as np
    import tifffile

    from .core.files import atomic_path

    top = int(labels.max()) if labels.size else 0
    dtype = np.uint16 if top < 2**16 else np.uint32
    kept = "".join(a for a in axes if a not in CHANNEL_LETTERS)
    with atomic_path(path) as temporary:
        tifffile.imwrite(temporary, labels.astype(dtype), metadata={"axes": kept})


def _write_table(path: Path, objects, plane_axes: list[str]) -> None:
    header = [
        "label",
        *[f"plane_{a}" for a in plane_axes],
        "area",
        "visible_area",
        "bbox_y0",
        "bbox_x0",
        "bbox_y1",
        "bbox_x1",
        "predicted_iou",
        "stability_score",
        "point_y",
        "point_x",
        "crop_y0",
        "crop_x0",
        "crop_y1",
        "crop_x1",
    ]
    from .core.files import atomic_path

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


class _ProgressBar:
    """A one-line text progress bar on stderr."""

    def __init__(self, width: int = 30) -> None:
        self.width = width

    def __call__(self, report) -> None:
        filled = int(report.fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        sys.stderr.write(f"\r[{bar}] {100 * report.fraction:5.1f}% {report.message[:40]:<40}")
        sys.stderr.flush()
