"""Make a curation's labels again from its provenance record: :func:`replay`.

The record's steps run in order on a new :class:`~.session.Curation` over the same
image, from the same start labels, with the same model weights, device, precision,
refiners and tiling (all checked or set from the record). On the same machine this
gives the saved labels bit for bit: :attr:`Replayed.identical` compares their content
hash with the record's ``result``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import edits
from .provenance import (
    ProvenanceError,
    apply_settings,
    check_image,
    check_model,
    check_record,
    check_start,
    weights_hash,
)
from .session import Curation


@dataclass(frozen=True)
class Replayed:
    """The labels a replay made, and whether they are the record's."""

    labels: np.ndarray
    identical: bool


def read_record(source: Any) -> dict:
    """A record from a dict, a sidecar path or JSON text; checked."""
    if isinstance(source, dict):
        return check_record(source)
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as error:
        raise ProvenanceError(f"Cannot read the record {path}: {error.strerror}.") from None
    try:
        return check_record(json.loads(text))
    except json.JSONDecodeError as error:
        raise ProvenanceError(
            f"{path} is not valid JSON ({error.msg}, line {error.lineno})."
        ) from None


def session_for(record: dict, device: str | None = None, checkpoint: Any = None) -> Any:
    """A SegAny session with the record's model (or ``checkpoint``, a file of the same
    weights) and settings; ``device`` may differ from the record's (then the labels may
    differ too)."""
    from ..api import SegAny

    model = record["model"]
    segany = SegAny(
        model["name"] if checkpoint is None else str(checkpoint),
        device=device or model["device"],
        precision=model["precision"],
    )
    apply_settings(segany, model)
    return segany


def replay(
    record: Any,
    image: Any,
    *,
    start_labels: Any = None,
    segany: Any = None,
    device: str | None = None,
    checkpoint: Any = None,
) -> Replayed:
    """Run a record's steps again on ``image``.

    Parameters
    ----------
    record : dict, path of a sidecar, or JSON text
    image : array (..., H, W[, C])
        The image the record was made on (checked: shape, dtype, used planes' pixels).
    start_labels : integer array, optional
        The labels the curation started from (checked); default zeros, which the
        record must have started from.
    segany : SegAny, optional
        A session to use (its weights are checked); default: one made from the record.
    device : str, optional
        With no ``segany``: another device than the record's.
    checkpoint : str or Path, optional
        With no ``segany``: the model's checkpoint file (a local or fine-tuned model
        the record names by its architecture); its weights are checked.

    Raises
    ------
    ProvenanceError
        Another image, model or start labels; an unreadable or unknown record.
    """
    record = read_record(record)
    check_image(record, image)
    reading = record["image"]["reading"]
    shape = tuple(record["start"]["shape"])
    dtype = np.dtype(record["start"]["dtype"])
    start = np.zeros(shape, dtype) if start_labels is None else np.array(start_labels)
    if start.dtype != dtype and np.array_equal(start.astype(dtype), start):
        start = start.astype(dtype)  # e.g. int32 labels read back as uint32 from OME-Zarr
    check_start(record, start)
    segany = segany or session_for(record, device, checkpoint)
    check_model(record, segany)
    apply_settings(segany, record["model"])
    curation = Curation(
        segany, image, start, **reading, max_history_bytes=record["max_history_bytes"]
    )
    for step in record["steps"]:
        _run(curation, step)
    same = edits.identity(curation.labels) == record["result"]
    return Replayed(curation.labels, same)


def _run(curation: Curation, step: dict) -> None:
    """One recorded step on ``curation``."""
    op = step["op"]
    plane = None if step.get("plane") is None else tuple(step["plane"])
    if op == "add":
        curation.add(
            step["points_yx"], step["labels"], step["box_yxyx"], plane=plane,
            candidate=step["candidate"], multimask=step["multimask"],
            overwrite=step["overwrite"],
        )  # fmt: skip
    elif op == "correct":
        curation.correct(step["id"], step["points_yx"], step["labels"], plane=plane)
    elif op == "split":
        curation.split(step["id"], step["points_yx"], plane=plane)
    elif op == "delete":
        curation.delete(step["ids"], plane=plane)
    elif op == "merge":
        curation.merge(step["ids"], plane=plane)
    elif op == "refine":
        curation.refine(step["ids"], plane=plane, split=step["split"])
    elif op == "everything":
        curation.everything(plane=plane, **step["params"])
    elif op == "pixels":
        curation.apply_pixels(step["action"], step)
    elif op == "model":
        segany = curation.segany
        if weights_hash(segany.predictor.model) != step["model"]["weights_xxh3_128"]:
            segany = session_for(step, device=str(segany.predictor.device))
            check_model(step, segany)
        apply_settings(segany, step["model"])
        curation.use_session(segany)
    elif op == "dtype":
        curation.use_labels(curation.labels.astype(step["dtype"]))
    elif op == "image":
        raise ProvenanceError(
            "The curation went on with another image at this step; a record replays on "
            "one image (save each image's labels while curating it)."
        )
    elif op == "reading":
        curation.use_reading(step["contrast_limits"])
    elif op == "undo":
        curation.undo()
    elif op == "redo":
        curation.redo()
    else:
        raise ProvenanceError(f"Unknown step {op!r} in the record; nothing was written.")
