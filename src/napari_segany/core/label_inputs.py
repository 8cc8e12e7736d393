"""Checks of label planes given to a refinement (any integer dtype, the plane's shape,
ids present)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError, describe_values

__all__ = ["check_ids", "check_labels", "check_labels_dtype", "integer_labels"]


def check_labels_dtype(dtype) -> None:
    """:class:`InputError` unless ``dtype`` holds object ids (integer or bool), saying
    how to convert (the one check of every labels input: refinement, curation, saving,
    exports)."""
    if np.dtype(dtype).kind not in "biu":
        raise InputError(
            f"Labels must be integers (integer ids, 0 = background), not {np.dtype(dtype)}; "
            "convert them first, e.g. labels.astype(np.uint32) (rounded ids) or "
            "(mask > 0).astype(np.uint8)."
        )


def integer_labels(labels) -> np.ndarray:
    """``labels`` as an integer or bool numpy array (the same object when it is one);
    :class:`InputError` for any other dtype (:func:`check_labels_dtype`)."""
    array = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    check_labels_dtype(array.dtype)
    return array


def check_labels(labels, hw: tuple[int, int]) -> np.ndarray:
    """``labels`` as an (H, W) integer (or bool) array; :class:`InputError` otherwise.

    Parameters
    ----------
    labels : array-like, (H, W)
        Any integer dtype (uint8 0/255 masks included) or bool.
    hw : (int, int)
        The plane's (H, W).
    """
    array = integer_labels(labels)
    if array.shape != tuple(hw):
        raise InputError(
            f"The labels are {array.shape} but the plane is {tuple(hw)}: pass the label "
            "plane of the image set with set_image (for a stack, one slice: labels[z])."
        )
    return array


def check_ids(labels: np.ndarray, ids: Sequence[int] | None) -> list[int]:
    """The ids to refine: ``ids`` (each present in ``labels``) or every non-zero id."""
    present = np.unique(labels)
    present = [int(v) for v in present if v != 0]
    if ids is None:
        return present
    wanted = [int(v) for v in np.atleast_1d(np.asarray(ids))]
    missing = sorted(set(wanted) - set(present))
    if missing or any(v == 0 for v in wanted):
        raise InputError(
            f"ids {describe_values(missing or [0])} are not objects of these labels "
            f"(objects: {describe_values(present)}); nothing was changed."
        )
    return sorted(set(wanted))
