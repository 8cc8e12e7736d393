"""``napari-segany replay SIDECAR.json IMAGE -o OUT.tif``: the command's body.

A ``segment-all`` output's record runs the same settings on IMAGE again
(``batch.provenance``); a curation record (the JSON sidecar saved with curated labels)
runs its steps again on IMAGE, headless, and writes the labels (TIFF or OME-Zarr,
atomically). The record is checked
first (the image's shape, dtype and used planes, the start labels, the model's
weights): a mismatch is refused with the reason, and nothing is written. Exit status
0 when the labels equal the record's result bit for bit, 1 when they were written but
differ (another device, precision or library version), or on an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``replay`` subcommand's arguments."""
    parser.add_argument("record", metavar="SIDECAR.json", help="the curation record")
    parser.add_argument("image", metavar="IMAGE", help="the image it was made on (TIFF or zarr)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help=".tif or .zarr")
    parser.add_argument("--labels", metavar="START", help="the labels the curation started from")
    parser.add_argument("--device", default=None, help="torch device (default: the record's)")
    parser.add_argument("--checkpoint", default=None, help="the model's checkpoint file")
    parser.add_argument("--name", default="labels", help="labels group name in a .zarr output")


def read_array(path: Path):
    """The whole array of a TIFF (memory-mapped where possible) or a zarr array /
    OME-Zarr image's finest level (lazy)."""
    from .core.errors import InputError

    if not path.exists():
        raise InputError(f"{path} does not exist.")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            return tifffile.memmap(path, mode="r")
        except ValueError:  # compressed or tiled: read it
            return tifffile.imread(path)
    import zarr

    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return node
    multiscales = node.attrs.asdict().get("multiscales")
    if not multiscales:
        raise InputError(f"{path} is a zarr group without an image ('multiscales').")
    return node[multiscales[0]["datasets"][0]["path"]]


def run(args: argparse.Namespace) -> int:
    """Replay ``args.record`` on ``args.image`` into ``args.output``."""
    import numpy as np

    from .core.errors import InputError
    from .curation.replay import read_record, replay
    from .saving import save_labels

    output = Path(args.output).resolve()
    for given in (args.image, args.labels, args.record):
        if given is not None and Path(given).resolve() == output:
            raise InputError(f"-o {args.output} would replace an input; write elsewhere.")
    from .batch.provenance import FORMAT as RUN_FORMAT

    loaded = _json_of(Path(args.record))
    if isinstance(loaded, dict) and loaded.get("format") == RUN_FORMAT:
        return _replay_run(args, loaded)  # a segment-all output's record
    record = read_record(loaded if isinstance(loaded, dict) else Path(args.record))
    image = read_array(Path(args.image))
    start = None if args.labels is None else np.asarray(read_array(Path(args.labels)))
    done = replay(record, image, start_labels=start, device=args.device, checkpoint=args.checkpoint)
    written = save_labels(done.labels, args.output, name=args.name)
    steps = len(record["steps"])
    if done.identical:
        sys.stdout.write(f"{written}: {steps} steps replayed; identical to the record's labels\n")
        return 0
    sys.stderr.write(
        f"napari-segany: {written}: {steps} steps replayed, but the labels differ from "
        "the record's (another device, precision or library version?)\n"
    )
    return 1


def _json_of(path: Path):
    """The JSON in ``path``, None when unreadable (the curation reader then says why)."""
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _replay_run(args: argparse.Namespace, record: dict) -> int:
    """Replay a ``segment-all`` record (``batch.provenance.replay_run``)."""
    from .batch.provenance import replay_run

    written, same = replay_run(record, args.image, args.output)
    if same:
        sys.stdout.write(f"{written}: segment-all replayed; identical to the record's labels\n")
        return 0
    sys.stderr.write(
        f"napari-segany: {written}: segment-all replayed, but the labels differ from the "
        "record's (another device, precision or library version?)\n"
    )
    return 1
