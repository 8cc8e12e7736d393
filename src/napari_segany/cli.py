"""The ``napari-segany`` command line.

Subcommands: ``info`` (environment and model cache), ``fetch NAME...`` (download and
verify checkpoints), ``import NAME FILE`` (put a file downloaded elsewhere into the
cache, for offline machines), ``segment-all INPUT... -o OUTPUT`` (everything mode on
every plane of TIFF stacks or zarr arrays into label TIFFs or OME-Zarr, in this process
or on a dask cluster with ``--scheduler``) and ``export LABELS --table OUT.csv --coco
OUT.json`` (per-object table and COCO RLE annotations of a label image) and ``replay
SIDECAR.json IMAGE -o OUT`` (curated labels made again from their provenance). torch is
imported inside the commands only, so ``napari-segany --help`` answers at once.

Exit status: 0 on success, 1 on an error we explain in one line on stderr (no
traceback), 2 on a usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

PROG = "napari-segany"


def _write(text: str = "") -> None:
    """The CLI's own output (its product), on stdout."""
    sys.stdout.write(text + "\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-segany")
    except PackageNotFoundError:
        return "unknown (not installed)"


def cmd_info(args: argparse.Namespace) -> int:
    """Print versions, the chosen device, bf16 support and the model cache."""
    import torch

    from .core import checkpoints, registry
    from .core.device import available_devices, native_bf16, resolve_device, resolve_precision

    device = resolve_device(args.device)
    _write(f"napari-segany   {_version()}")
    _write(f"torch           {torch.__version__}")
    _write(f"device          {device} (available: {', '.join(available_devices())})")
    _write(f"native bf16     {'yes' if native_bf16(device) else 'no'}")
    _write(f"precision auto  {resolve_precision('auto', device)}")
    _write(f"cache           {checkpoints.cache_dir()}")
    _write("models:")
    for name, entry in registry.REGISTRY.items():
        _write(f"  {name:<20} {_model_state(entry):<11} {entry.description}")
    return 0


def _model_state(entry) -> str:
    """'packaged', 'cached', 'not cached' or 'damaged' (a packaged file that fails)."""
    from .core import checkpoints
    from .core.errors import CheckpointError

    if entry.packaged:
        try:
            checkpoints.packaged_checkpoint(entry)
        except CheckpointError:
            return "damaged"
        return "packaged"
    return "cached" if checkpoints.cached_checkpoint(entry) is not None else "not cached"


def cmd_fetch(args: argparse.Namespace) -> int:
    """Download and verify the named checkpoints (each once)."""
    from .core import checkpoints, registry

    for name in args.names:
        entry = registry.get_entry(name)  # unknown names fail before any download
        path = checkpoints.fetch(entry, progress=not args.quiet)
        _write(f"{name}: {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Verify a local file against the registry and copy it into the cache."""
    from .core import checkpoints

    path = checkpoints.import_checkpoint(args.name, args.file)
    _write(f"{args.name}: {path}")
    return 0


def cmd_segment_all(args: argparse.Namespace) -> int:
    """Everything mode on every plane of each input; write labels (and optionally CSVs)."""
    from . import _segment_all

    return _segment_all.run(args)


def cmd_export(args: argparse.Namespace) -> int:
    """Per-object CSV table and/or COCO RLE JSON of a label image."""
    from . import _export_cli

    return _export_cli.run(args)


def cmd_replay(args: argparse.Namespace) -> int:
    """Make curated labels again from their provenance sidecar."""
    from . import _replay_cli

    return _replay_cli.run(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment Anything for microscopy: model cache and environment tools.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="show device, bf16 support and cached models")
    info.add_argument("--device", default="auto", help="device to report on (default: auto)")
    info.set_defaults(handler=cmd_info)

    fetch = commands.add_parser("fetch", help="download and verify model checkpoints")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="registry name, e.g. vit_b")
    fetch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(handler=cmd_fetch)

    imp = commands.add_parser(
        "import", help="copy a checkpoint downloaded elsewhere into the cache (offline)"
    )
    imp.add_argument("name", metavar="NAME", help="registry name the file belongs to")
    imp.add_argument("file", metavar="FILE", help="the downloaded checkpoint file")
    imp.set_defaults(handler=cmd_import)

    from ._segment_all import add_arguments

    segment = commands.add_parser(
        "segment-all",
        help="everything mode on TIFF stacks or zarr -> label TIFFs or OME-Zarr (+ CSV "
        "tables), here or on a dask cluster (--scheduler)",
    )
    add_arguments(segment)
    segment.set_defaults(handler=cmd_segment_all)

    from ._export_cli import add_arguments as add_export_arguments

    export = commands.add_parser(
        "export", help="per-object CSV table and/or COCO RLE JSON of a label image"
    )
    add_export_arguments(export)
    export.set_defaults(handler=cmd_export)

    from ._replay_cli import add_arguments as add_replay_arguments

    replay = commands.add_parser(
        "replay", help="make curated labels again from their JSON sidecar (checked first)"
    )
    add_replay_arguments(replay)
    replay.set_defaults(handler=cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv
        Arguments without the program name; ``None`` reads ``sys.argv[1:]``.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2)
        return int(exit_.code or 0)
    from .core.errors import SegAnyError

    command: Callable[[argparse.Namespace], int] = args.handler
    log_handler = _attach_log_handler(args.verbose)
    try:
        return command(args)
    except SegAnyError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    finally:
        logging.getLogger("napari_segany").removeHandler(log_handler)


def _attach_log_handler(verbose: bool) -> logging.Handler:
    """Show our log records on stderr while a command runs (INFO with --verbose)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    package_logger = logging.getLogger("napari_segany")
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO if verbose else logging.WARNING)
    return handler


if __name__ == "__main__":
    sys.exit(main())
