"""The pixel rules of :class:`~.session.Curation`'s edits (numpy only, no history).

Each function changes one (H, W) label plane in place or answers a question about it;
:mod:`.session` records the steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from ..core.depth import inner_depth
from ..core.embeddings import content_digest
from ..core.errors import InputError, describe_values
from ..core.label_inputs import integer_labels
from ..core.labels import check_label_room, free_pixels

LABEL_DTYPE = np.uint32


def checked_labels(labels: Any, image: Any, channel_axis: int | None = None) -> np.ndarray:
    """The labels to curate: ``labels`` itself when it is a writable numpy integer
    array of the image's plane shape, else a converted copy; zeros when None.

    The image's planes are (H, W), or (H, W, C) with a last colour axis, or have their
    channels on ``channel_axis`` (an axis of the plane, as ``SegAny.set_image`` takes
    it); the labels have the image's shape without that axis.
    """
    image_shape = tuple(int(s) for s in image.shape)
    if labels is None:
        return np.zeros(_plane_shape(image_shape, channel_axis), dtype=LABEL_DTYPE)
    array = integer_labels(labels)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    lead = array.ndim - 2
    expected = list(image_shape)
    if channel_axis is not None and 0 <= lead < len(image_shape):
        plane_ndim = len(image_shape) - lead
        del expected[lead + channel_axis % plane_ndim]
    fits = array.ndim >= 2 and (
        tuple(array.shape) == tuple(expected)
        or (channel_axis is None and tuple(array.shape) == image_shape[: array.ndim]
            and len(image_shape) == array.ndim + 1)
    )  # fmt: skip
    if not fits:
        raise InputError(
            f"Labels shaped {array.shape} do not fit the image shaped {image_shape}: they "
            "need the image's shape without its channel axis (give channel_axis= when the "
            "channels are not last)."
        )
    if array.size and array.min() < 0:
        raise InputError("Labels must not be negative (0 is background, ids are > 0).")
    if not array.flags.writeable:
        array = array.copy()
    return array


def _plane_shape(image_shape: tuple[int, ...], channel_axis: int | None) -> tuple[int, ...]:
    """The labels' shape for an image without labels: the image's, less a channel axis
    (``channel_axis`` of 3-axis planes, or a last axis of 3 or 4: colour)."""
    if channel_axis is not None:
        shape = list(image_shape)
        del shape[len(shape) - 3 + channel_axis % 3]
        return tuple(shape)
    colour = len(image_shape) > 2 and image_shape[-1] in (3, 4)
    return image_shape[:-1] if colour else image_shape


def identity(array: Any) -> dict:
    """Shape, dtype and a content hash (xxh3-128 of the bytes) of an array."""
    data = np.asarray(array)
    return {"shape": list(data.shape), "dtype": data.dtype.name, "xxh3_128": content_digest(data)}


def check_room(labels: np.ndarray, needed: int, name: str = "labels") -> None:
    """:class:`~napari_segany.core.errors.LabelsDtypeError` unless the labels' dtype
    holds id ``needed`` (``name``: the labels in the message)."""
    if needed:
        check_label_room(labels.dtype, needed, name)


def id_list(ids: int | Sequence[int]) -> list[int]:
    """Object ids as a sorted list of distinct positive ints."""
    values = sorted({int(v) for v in np.atleast_1d(np.asarray(ids)).ravel()})
    if not values or values[0] <= 0:
        raise InputError(f"Object ids must be positive, got {describe_values(values)}.")
    return values


def prompt_dict(points_yx: Any, labels: Any, box_yxyx: Any) -> dict:
    """The prompts as ``SegAny.segment`` keywords (points get label 1 by default)."""
    prompt: dict[str, Any] = {"points_yx": None, "labels": None, "box_yxyx": None}
    if points_yx is not None and len(points_yx):
        points = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
        prompt["points_yx"] = points
        given = np.ones(len(points), np.int64) if labels is None else np.asarray(labels)
        prompt["labels"] = given.astype(np.int64).reshape(-1)
    if box_yxyx is not None and np.size(box_yxyx):
        prompt["box_yxyx"] = np.asarray(box_yxyx, dtype=np.float64)
    if prompt["points_yx"] is None and prompt["box_yxyx"] is None:
        raise InputError("Give points (points_yx=) or a box (box_yxyx=) for the object.")
    return prompt


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars turned into lists and Python numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def paint_new(
    view: np.ndarray, masks: np.ndarray, new_ids: Callable[[int], list[int]], overwrite: bool
) -> list[int]:
    """Write masks (N, H, W) into ``view`` with new ids, as a commit into a Labels layer
    does (``core.labels.free_pixels``): only the objects that find pixels get an id,
    ``new_ids(count)`` of them in order. Returns the ids written."""
    pixels = free_pixels(view, np.asarray(masks, dtype=bool), overwrite)
    ids = iter(new_ids(sum(rows.size > 0 for rows, _ in pixels)))
    written = []
    for rows, cols in pixels:
        if rows.size:
            obj_id = next(ids)
            view[rows, cols] = obj_id
            written.append(int(obj_id))
    return written


def replace_object(view: np.ndarray, obj_id: int, mask: np.ndarray) -> None:
    """Object ``obj_id`` becomes ``mask``: on its own pixels and background only; the
    pixels it had outside ``mask`` become background."""
    own = view == obj_id
    view[own & ~mask] = 0
    view[mask & ((view == 0) | own)] = obj_id


def object_prompt(segany: Any, view: np.ndarray, obj_id: int, points_yx: Any = None) -> dict | None:
    """Object ``obj_id``'s own prompts on the session's current plane (the refinement's:
    grown box, most interior point, its mask as ``mask_input``), None when absent.

    On a tiled plane the window holding the object and the clicks ``points_yx``
    ((N, 2) plane pixels) becomes current (``SegAny.focus_window``) and the mask is
    cropped to it; the points and box stay in plane pixels, as ``segment`` takes them.
    """
    from ..core.refine_labels import MaskFrame, mask_prompt, mask_to_logits
    from ..core.tiling import prompt_region

    mask = view == obj_id
    if not mask.any():
        return None
    rules = segany.refine_rules
    found = mask_prompt(mask, obj_id, rules)
    point_yx = np.asarray(found.point_yx, np.float64)
    box_yxyx = np.asarray(found.box_yxyx, np.float64)
    corners = [point_yx[None]]
    if points_yx is not None:
        corners.append(np.asarray(points_yx, np.float64).reshape(-1, 2))
    window = segany.focus_window(prompt_region(np.concatenate(corners), box_yxyx))
    if window is not None:
        y0, x0, y1, x1 = window
        mask = mask[y0:y1, x0:x1]
    model = segany.predictor.model
    frame = MaskFrame.of(segany.current.embedding, model.image_size, model.square_frame)
    return {
        "point_yx": point_yx,
        "box_yxyx": box_yxyx,
        "mask_input": mask_to_logits(mask[None], frame, rules.mask_logit)[0],
    }


def correction_prompt(
    segany: Any, view: np.ndarray, obj_id: int, points_yx: Any, labels: Any
) -> dict:
    """``SegAny.segment`` keywords correcting ``obj_id``: its own prompts plus the
    clicks (the clicks alone where the object is absent from this plane)."""
    clicks = prompt_dict(points_yx, labels, None)
    own = object_prompt(segany, view, obj_id, clicks["points_yx"])
    if own is None:
        return clicks
    points = np.concatenate([own["point_yx"][None], clicks["points_yx"]])
    signs = np.concatenate([[1], clicks["labels"]])
    return {
        "points_yx": points,
        "labels": signs,
        "box_yxyx": own["box_yxyx"],
        "mask_input": own["mask_input"],
    }


def split_mask(segany: Any, view: np.ndarray, obj_id: int, points_yx: Any) -> np.ndarray:
    """The part of ``obj_id`` that keeps its id when split at the clicks ``points_yx``
    (on the part to cut off).

    Two answers of the model, each the best of three candidates, within the object:
    the part kept, from a positive point deep in the object and farthest from the
    clicks, and the part cut off, from the clicks as positive points. Each pixel of
    the object goes to the nearer answer (ties: kept). Prompting the kept part with
    the object's box and the clicks as negatives, or the negatives alone, did worse on
    generated touching nuclei (mean IoU of both parts with their nuclei 0.444 and
    0.540 against 0.762, 21 pairs: ``benchmarks/bench_split.py``).
    """
    own = view == obj_id
    if not own.any():
        raise InputError(f"Object {obj_id} is not on this plane; nothing to split.")
    clicks = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
    if not len(clicks):
        raise InputError("Split needs a click on the part to cut off.")
    depth = inner_depth(own)
    rows, cols = np.nonzero(depth >= 0.5 * depth.max())
    far = np.min(np.hypot(rows[:, None] - clicks[:, 0], cols[:, None] - clicks[:, 1]), axis=1)
    seed = np.array([[rows[np.argmax(far)], cols[np.argmax(far)]]], dtype=np.float64)
    kept = segany.segment(points_yx=seed, labels=[1], multimask=True).best()[0] & own
    cut = segany.segment(points_yx=clicks, labels=np.ones(len(clicks), np.int64)).best()[0]
    cut &= own
    if kept.any() and cut.any():
        nearer = ndimage.distance_transform_edt(~kept) <= ndimage.distance_transform_edt(~cut)
        keep = own & nearer
    else:
        keep = own & ~cut
    if not keep.any() or keep.sum() == own.sum():
        raise InputError(
            f"The model did not separate object {obj_id} at that click; click on the "
            "middle of the part to cut off, or correct the object instead."
        )
    return keep


def split_object(view: np.ndarray, obj_id: int, keep: np.ndarray, new_id: int) -> None:
    """``obj_id`` keeps ``keep``; the rest of it becomes ``new_id``."""
    own = view == obj_id
    view[own & ~keep] = new_id


def encode_changes(changes: Sequence[Any]) -> dict:
    """Plane changes as JSON: per plane, runs ``[start, length, value]`` of consecutive
    flat indices that took the same value."""
    planes = []
    for change in changes:
        flat, after = np.asarray(change.flat, np.int64), np.asarray(change.after)
        breaks = np.flatnonzero((np.diff(flat) != 1) | (np.diff(after.astype(np.int64)) != 0))
        starts = np.concatenate([[0], breaks + 1]) if flat.size else np.zeros(0, np.int64)
        lengths = np.diff(np.concatenate([starts, [flat.size]]))
        runs = np.stack([flat[starts], lengths, after[starts].astype(np.int64)], axis=1)
        planes.append({"plane": list(change.index), "runs": runs.tolist()})
    return {"changes": planes}


def decode_changes(record: dict, labels: np.ndarray) -> list:
    """The :class:`~.history.PlaneChange` list of :func:`encode_changes`' ``record``,
    their "before" values read from ``labels`` now."""
    from .history import PlaneChange

    found = []
    for entry in record["changes"]:
        index = tuple(int(i) for i in entry["plane"])
        runs = np.asarray(entry["runs"], dtype=np.int64).reshape(-1, 3)
        flat = np.concatenate([np.arange(s, s + n) for s, n, _ in runs]) if len(runs) else (
            np.zeros(0, np.int64))  # fmt: skip
        after = np.repeat(runs[:, 2], runs[:, 1]).astype(labels.dtype)
        plane = labels[index] if index else labels
        before = plane.ravel()[flat] if plane.flags.c_contiguous else plane.reshape(-1)[flat]
        found.append(PlaneChange(index, flat, before.copy(), after))
    return found
