"""The provenance record of a curation (the JSON sidecar) and its checks.

A record holds what is needed to make the labels again and to refuse doing it on the
wrong inputs:

- ``software``: napari-segany, torch, numpy and Python versions, the platform;
- ``model``: name, a hash of its weights (xxh3-128 over every parameter and buffer,
  the embedding store's fingerprint; the same for the same checkpoint file on any
  device), device, precision, prompt refiners, tiling, everything-mode defaults;
- ``image``: shape, dtype, reading (contrast limits, channels) and a content hash of
  every plane an edit used;
- ``start``: the labels the curation started from (shape, dtype, content hash);
- ``steps``: every edit in order, with its prompts and parameters per object and
  plane, undo and redo included (``{"op": "add", "plane": [3], "points_yx": ...}``);
- ``history``: the undoable steps left at saving, described;
- ``result``: shape, dtype and content hash of the labels saved.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import weakref
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..core.errors import InputError
from . import edits

FORMAT = "napari-segany curation"
VERSION = 1


class ProvenanceError(InputError):
    """A record that cannot be replayed here: another image, model or start labels."""


def versions() -> dict:
    """Versions of what computed the labels."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        ours = version("napari-segany")
    except PackageNotFoundError:  # pragma: no cover - a source checkout
        ours = "unknown (not installed)"
    return {
        "napari-segany": ours,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def weights_hash(model: Any) -> str:
    """The xxh3-128 hash of a model's weights (``core.store.model_fingerprint``),
    computed once per model object."""
    from ..core.store import model_fingerprint

    if model not in _FINGERPRINTS:
        _FINGERPRINTS[model] = model_fingerprint(model)
    return _FINGERPRINTS[model]


def model_identity(segany: Any) -> dict:
    """The session's model and every setting an edit's result depends on (what a
    replay must use): weights, device, precision, prompt refiners, tiling,
    everything-mode defaults, the refinement rules. A session without some of them
    (a stand-in) gets ``None`` there, and a weights hash ``"unknown"``."""
    import torch

    predictor = getattr(segany, "predictor", None)
    model = getattr(predictor, "model", None)
    rules = getattr(segany, "refine_rules", None)
    everything = getattr(segany, "everything", None)
    defaults = getattr(everything, "defaults", None)
    return {
        "name": getattr(predictor, "name", type(segany).__name__),
        "weights_xxh3_128": weights_hash(model)
        if isinstance(model, torch.nn.Module)
        else "unknown",
        "device": str(getattr(predictor, "device", "cpu")),
        "precision": getattr(predictor, "precision", None),
        "refine": [refiner.name for refiner in getattr(segany, "refiners", ())],
        "tiling": edits.jsonable(getattr(segany, "tiling", None)),
        "everything_defaults": None if defaults is None else edits.jsonable(dict(defaults)),
        "refine_rules": None if rules is None else edits.jsonable(dataclasses.asdict(rules)),
        "separate_merged": bool(getattr(segany, "separate_merged", True)),
    }


def apply_settings(segany: Any, identity: dict) -> None:
    """Give ``segany`` (of the same weights) the settings of ``identity``."""
    from ..core.refine_labels import RefineRules

    segany.refiners = list(identity["refine"])
    segany.tiling = tuple(identity["tiling"]) if isinstance(identity["tiling"], list) else (
        identity["tiling"])  # fmt: skip
    if identity.get("everything_defaults") is not None:
        segany.everything.defaults.clear()
        segany.everything.defaults.update(identity["everything_defaults"])
    if identity.get("refine_rules") is not None:
        segany.refine_rules = RefineRules(**identity["refine_rules"])
    segany.separate_merged = bool(identity.get("separate_merged", True))


def used_planes(steps: list[dict], lead: int) -> list[tuple[int, ...]]:
    """The planes the steps segmented on (whose pixels the labels depend on)."""
    pixel_ops = {"add", "correct", "split", "refine", "everything"}
    found = {tuple(s["plane"]) for s in steps if s["op"] in pixel_ops}
    return sorted(index for index in found if len(index) == lead)


def image_identity(image: Any, planes: list[tuple[int, ...]], reading: dict) -> dict:
    """Shape, dtype, reading and each used plane's content hash."""
    hashes = {}
    for index in planes:
        plane = np.asarray(image[index] if index else image)
        hashes[",".join(str(i) for i in index)] = edits.identity(plane)["xxh3_128"]
    return {
        "shape": [int(s) for s in image.shape],
        "dtype": np.dtype(image.dtype).name,
        "reading": edits.jsonable(reading),
        "planes_xxh3_128": hashes,
    }


def build_record(curation: Any) -> dict:
    """The JSON-ready record of ``curation`` (module docstring)."""
    planes = used_planes(curation.steps, curation.lead)
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": versions(),
        "model": curation.initial_model,
        "image": image_identity(curation.image, planes, curation.initial_reading),
        "start": curation.start,
        "max_history_bytes": curation.history.max_bytes,
        "steps": list(curation.steps),
        "history": [step.describe() for step in curation.history.steps],
        "result": edits.identity(curation.labels),
    }


def check_record(record: Any) -> dict:
    """``record`` when it is a curation record of a version we read, else
    :class:`ProvenanceError`."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ProvenanceError("This JSON is not a napari-segany curation record.")
    if record.get("version") != VERSION:
        raise ProvenanceError(
            f"Curation record version {record.get('version')} is not the version {VERSION} "
            "this napari-segany reads; replay it with the version that wrote it "
            f"({record.get('software', {}).get('napari-segany', 'unknown')})."
        )
    return record


def check_image(record: dict, image: Any) -> None:
    """:class:`ProvenanceError` unless ``image`` is the record's (shape, dtype, and the
    content of every plane the steps used)."""
    wanted = record["image"]
    shape, dtype = [int(s) for s in image.shape], np.dtype(image.dtype).name
    if shape != wanted["shape"] or dtype != wanted["dtype"]:
        raise ProvenanceError(
            f"The record was made on an image of shape {tuple(wanted['shape'])} "
            f"({wanted['dtype']}); this one is {tuple(shape)} ({dtype})."
        )
    for key, digest in wanted["planes_xxh3_128"].items():
        index = tuple(int(i) for i in key.split(",")) if key else ()
        plane = np.asarray(image[index] if index else image)
        if edits.identity(plane)["xxh3_128"] != digest:
            where = f"plane {index}" if index else "the image"
            raise ProvenanceError(
                f"The pixels of {where} differ from those the record was made on: "
                "another image (or one edited since)."
            )


def check_model(record: dict, segany: Any) -> None:
    """:class:`ProvenanceError` unless ``segany`` has the record's model weights."""
    wanted = record["model"]
    have = weights_hash(segany.predictor.model)
    if have != wanted["weights_xxh3_128"]:
        raise ProvenanceError(
            f"The record was made with model {wanted['name']!r} (weights "
            f"{wanted['weights_xxh3_128'][:12]}...); this session's {segany.predictor.name!r} "
            f"has other weights ({have[:12]}...). Load the same checkpoint."
        )


def check_start(record: dict, labels: Any) -> None:
    """:class:`ProvenanceError` unless ``labels`` are the record's start labels."""
    wanted = record["start"]
    have = edits.identity(labels)
    if have != wanted:
        started = "empty labels" if not np.any(np.asarray(labels)) else "these labels"
        raise ProvenanceError(
            f"The record starts from labels {tuple(wanted['shape'])} {wanted['dtype']} "
            f"(hash {wanted['xxh3_128'][:12]}...), not from {started} "
            f"{tuple(have['shape'])} {have['dtype']}; pass the labels it started from."
        )
