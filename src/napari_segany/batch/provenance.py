"""The provenance sidecar of a ``segment-all`` output, and its replay.

Each input's labels get a JSON record next to them (as ``save_labels`` places it:
``<stem>.segany.json`` beside a TIFF, ``segany.json`` inside an OME-Zarr labels group):
the package versions, the run's settings (model and checkpoint hash, mode, parameters,
contrast, channels, axes, linking), the input (path, size, shape, dtype, axes) and the
labels' content hash. ``napari-segany replay RECORD INPUT -o OUT`` runs the same
settings on INPUT in this process and says whether the labels are the same, bit for bit.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError

FORMAT = "napari-segany segment-all"
VERSION = 1


def checkpoint_identity(model: Any) -> dict:
    """The model's checkpoint: the registry's hash of its file, or the xxh128 of the
    local file given (``--checkpoint``)."""
    import xxhash

    from ..core.registry import REGISTRY

    local = model.checkpoint or (model.model if Path(model.model).is_file() else None)
    if local:
        digest = xxhash.xxh128()
        with open(local, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
        return {"file": str(Path(local).resolve()), "xxh128": digest.hexdigest()}
    entry = REGISTRY.get(model.model)
    if entry is None:
        return {"file": None, "xxh128": None}
    return {"file": entry.name, entry.hash_name: entry.hash_hex}


def labels_path(target: Any) -> Path:
    """Where the record of ``target`` (a ``batch.outputs.Target``) goes."""
    from ..saving import SIDECAR_NAME, sidecar_path

    if target.kind == "zarr":
        return Path(target.labels) / SIDECAR_NAME
    path = Path(target.labels)
    try:
        return sidecar_path(path)
    except InputError:  # a label file named without .tif
        return path.with_name(path.name + ".segany.json")


def read_labels(target: Any) -> np.ndarray:
    """The labels a run wrote for ``target`` (``saving.load_labels``)."""
    from ..saving import load_labels

    if target.kind == "zarr":  # <store>/<name>/labels/<name>
        return load_labels(Path(target.labels).parent.parent, name=target.name)
    return load_labels(target.labels)


def write_run_record(job: Any, request: Any) -> Path:
    """Write the record of one finished input (its labels are written)."""
    return write_record(labels_path(job.target), request, job.source, read_labels(job.target))


def write_record(path: Path, request: Any, source: Any, labels: np.ndarray) -> Path:
    """Write the record of ``labels``, made from ``source`` by ``request``, at ``path``."""
    from ..curation.edits import identity as content_identity
    from ..curation.provenance import versions
    from ..saving import write_json
    from .inputs import identity

    record = {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": versions(),
        "settings": request.settings.as_dict(),
        "checkpoint": checkpoint_identity(request.settings.model),
        "axes": request.axes,
        "link": request.link,
        "link_iou": request.link_iou,
        "input": identity(source),
        "result": content_identity(labels),
    }
    write_json(path, record)
    return path


def settings_from(record: dict):
    """The :class:`~.units.Settings` of a record."""
    from .units import ModelSpec, Settings

    stored = record["settings"]
    model = dict(stored["model"])
    if isinstance(model.get("tiling"), list):
        model["tiling"] = tuple(model["tiling"])
    return Settings(
        model=ModelSpec(**model),
        mode=stored["mode"],
        params=tuple((name, value) for name, value in stored["params"]),
        contrast_limits=None
        if stored["contrast_limits"] is None
        else tuple(stored["contrast_limits"]),  # fmt: skip
        channels=None if stored["channels"] is None else tuple(stored["channels"]),
    )


def replay_run(record: dict, image: str, output: str) -> tuple[Path, bool]:
    """Run a record's settings on ``image`` into ``output`` (this process); the labels
    written and whether they equal the record's.

    Raises
    ------
    InputError
        ``image`` is not of the record's shape, dtype and axes (nothing written), or
        the run failed.
    """
    from ..curation.edits import identity as content_identity
    from ..curation.provenance import ProvenanceError
    from .inputs import open_source
    from .outputs import plan_outputs
    from .runner import BatchRequest, run_batch

    source = open_source(Path(image), record["axes"])
    wanted = record["input"]
    have = (list(source.shape), source.dtype, source.axes)
    if have != (wanted["shape"], wanted["dtype"], wanted["axes"]):
        raise ProvenanceError(
            f"The record was made on an input of shape {tuple(wanted['shape'])} "
            f"{wanted['dtype']} ({wanted['axes']}); {image} is {tuple(have[0])} {have[1]} "
            f"({have[2]})."
        )
    request = BatchRequest(
        inputs=[image], output=output, settings=settings_from(record), axes=record["axes"],
        link=record["link"], link_iou=record["link_iou"], overwrite=True, quiet=True,
    )  # fmt: skip
    if run_batch(request) != 0:
        raise InputError(f"Replaying the run on {image} failed (see the error above).")
    target = plan_outputs(output, 1, None).target(source)
    return Path(target.labels), content_identity(read_labels(target)) == record["result"]
