"""``napari-segany segment-all``: everything mode on TIFF stacks into label images.

One TIFF into one label TIFF runs here, in this process (:func:`run`); several
inputs, globs, zarr / OME-Zarr inputs, a folder or OME-Zarr output, or
``--scheduler`` run as a batch of planes (:mod:`napari_segany.batch`). Kept apart from
``cli.py`` so the parser stays short; torch, tifffile, dask and the model are imported
inside :func:`run` only.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

SPATIAL = ("Y", "X")
CHANNEL_LETTERS = ("C", "S")
GLOB_CHARACTERS = "*?["
ZARR_SUFFIXES = (".ome.zarr", ".zarr")

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
    _add_io_arguments(parser)
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
        help="write the per-object table (default name: OUT.csv; batches: <name>.csv beside "
        "each label TIFF, objects.csv in each OME-Zarr labels group, or into a folder given)",
    )
    parser.add_argument(
        "--tiling",
        type=_tiling,
        default="auto",
        metavar="auto|none|TILE,HALO",
        help="planes larger than the model's frame: auto (windows of the frame for planes "
        "over twice its size), none (one pass), or tile and halo sizes in pixels",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _add_io_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, output and where the planes run."""
    parser.add_argument(
        "input",
        nargs="+",
        metavar="INPUT",
        help="TIFF or OME-TIFF image (2D to 5D), glob (quoted), zarr array or OME-Zarr image",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="label TIFF (one input); a folder (several inputs, or ending in /) with one "
        "label TIFF per input; or an OME-Zarr store (ending in .zarr) of labels groups",
    )
    parser.add_argument(
        "--scheduler",
        metavar="SCHEDULER",
        help="run the planes on dask: local:N starts N worker processes here (local: 2), "
        "tcp://host:8786 uses a running cluster (default: this process)",
    )


def _tiling(text: str):
    """``--tiling``'s value: "auto", None, or (tile, halo)."""
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        tile, halo = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': give auto, none or TILE,HALO") from None
    return tile, halo


def run(args: argparse.Namespace) -> int:
    """Run ``segment-all``; errors are :class:`SegAnyError` with a clear message."""
    if not _single_file(args):
        from .batch import run_batch

        return run_batch(_batch_request(args))
    output, table = _outputs(args)
    data, axes = _read(Path(args.input[0]), args.axes)
    spatial_axes, channel_axis = _layout(axes, data.shape)

    from .api import SegAny

    source, checkpoint = _model(args)
    session = SegAny(
        source,
        checkpoint=checkpoint,
        device=args.device,
        precision=args.precision,
        tiling=args.tiling,
    )
    limits, channels = args.contrast_limits, args.channels
    params = _params(args)
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
    _write_record(args, output)
    if table is not None:
        from .batch.outputs import write_table

        write_table(table, result.objects, [a for a in axes if a not in "YX" + "CS"])
    sys.stdout.write(f"{output}: {len(result.objects)} objects\n")
    return 0


def _write_record(args: argparse.Namespace, output: Path) -> None:
    """The provenance record beside the labels written (``batch.provenance``: what a
    batch run of the same settings writes, and replays)."""
    from .batch.inputs import open_source
    from .batch.outputs import Target
    from .batch.provenance import labels_path, read_labels, write_record

    source = open_source(Path(args.input[0]), args.axes)
    target = Target("tiff", output, None, source.name)
    write_record(labels_path(target), _batch_request(args), source, read_labels(target))


def _single_file(args: argparse.Namespace) -> bool:
    """One TIFF (no glob) into one label TIFF, in this process: the run of
    :func:`run` itself; anything else is a batch."""
    if args.scheduler is not None or len(args.input) != 1:
        return False
    name, output = args.input[0], args.output
    if any(c in name for c in GLOB_CHARACTERS) and not Path(name).exists():
        return False
    if Path(name).is_dir() or name.rstrip("/").lower().endswith(ZARR_SUFFIXES):
        return False
    return not (output.endswith(("/", os.sep)) or output.lower().endswith(ZARR_SUFFIXES))


def _model(args: argparse.Namespace) -> tuple[str, str | None]:
    """(model, checkpoint) for ``SegAny``: a checkpoint alone names its architecture."""
    from .core.registry import DEFAULT_MODEL

    if args.checkpoint and not args.model:  # the checkpoint's own architecture
        return args.checkpoint, None
    return args.model or DEFAULT_MODEL, args.checkpoint


def _params(args: argparse.Namespace) -> dict:
    """Everything-mode parameters given on the command line (``mode`` included)."""
    names = [flag[2:].replace("-", "_") for flag, *_ in EVERYTHING_OPTIONS]
    params = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    params.update({flag: True for flag in ("use_m2m", "box_refinement") if getattr(args, flag)})
    return params


def _batch_request(args: argparse.Namespace):
    """The :class:`~napari_segany.batch.BatchRequest` of the command line."""
    from .batch import BatchRequest, ModelSpec, Settings
    from .core.everything import AUTO

    model, checkpoint = _model(args)
    if checkpoint is not None:  # workers may start elsewhere: an absolute path
        checkpoint = os.path.abspath(checkpoint)
    elif os.path.isfile(model):
        model = os.path.abspath(model)
    params = _params(args)
    mode = params.pop("mode", AUTO)
    limits = None if args.contrast_limits is None else tuple(args.contrast_limits)
    settings = Settings(
        ModelSpec(model, checkpoint, args.device, args.precision, args.tiling),
        mode,
        tuple(sorted(params.items())),
        limits,
        None if args.channels is None else tuple(args.channels),
    )
    return BatchRequest(
        inputs=list(args.input),
        output=args.output,
        settings=settings,
        axes=args.axes,
        link=args.link,
        link_iou=args.link_iou,
        table=args.csv,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        quiet=args.quiet,
    )


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
            raise InputError(
                f"{path} is a folder; give a file name, e.g. {path / 'labels.tif'}, or end "
                f"it with / to write one labels file per input into it."
            )
        if path is not None and path.exists() and not args.overwrite:
            raise InputError(f"{path} exists; pass --overwrite to replace it.")
        if path is not None:
            _check_folder(path)
    if Path(args.input[0]).resolve() == output.resolve():
        raise InputError("The output would replace the input image; choose another -o path.")
    return output, table


def _check_folder(path: Path) -> None:
    """Raise :class:`InputError` unless ``path``'s folder exists and takes a new file."""
    from .batch.outputs import check_folder

    check_folder(path.parent, path.name)


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
    from .batch.inputs import check_axes

    return data, check_axes(axes or found, data.shape)


def _layout(axes: str, shape) -> tuple[tuple[int, int], int | None]:
    """Spatial axes (Y, X) and the channel axis (C or S) from axis letters."""
    from .batch.inputs import layout

    return layout(axes, shape)


def _write_labels(path: Path, labels, axes: str) -> None:
    """Write the label TIFF atomically (an existing file is replaced only when done)."""
    import tifffile

    from .batch.outputs import label_dtype
    from .core.files import atomic_path

    dtype = label_dtype(int(labels.max()) if labels.size else 0)
    kept = "".join(a for a in axes if a not in CHANNEL_LETTERS)
    with atomic_path(path) as temporary:
        tifffile.imwrite(
            temporary, labels.astype(dtype), photometric="minisblack", metadata={"axes": kept}
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
