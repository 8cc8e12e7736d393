"""Typed errors of napari-segany.

Every error raised on bad user input or a bad environment is a subclass of
:class:`SegAnyError`, and its message says what went wrong *and* what to do next.
Warnings about results that are probably poor (not errors) have their own classes, so
scripts and the widget can catch them. Messages list user values through
:func:`describe_values`, which keeps them short.
"""

from __future__ import annotations


class SegAnyError(Exception):
    """Base class of every error napari-segany raises on purpose."""


class InputError(SegAnyError, ValueError):
    """An argument has the wrong shape, dtype, range or value."""


class PromptError(InputError):
    """A point, box, label or mask prompt is invalid (shape, range, outside image)."""


class ImageError(InputError):
    """An image cannot be turned into a 2D plane the model accepts."""


class LabelsDtypeError(InputError):
    """A Labels layer's integer dtype cannot hold the ids a write needs (nothing written).

    Attributes
    ----------
    layer_name : str
    dtype : numpy.dtype
        The layer's dtype now.
    needed : int
        The largest id the write needs.
    wider : numpy.dtype or None
        The smallest dtype of the same kind that holds ``needed`` (None: none does).
    """

    def __init__(self, message: str, layer_name: str, dtype, needed: int, wider) -> None:
        super().__init__(message)
        self.layer_name, self.dtype, self.needed, self.wider = layer_name, dtype, needed, wider


class NoImageError(SegAnyError, RuntimeError):
    """A prompt was given before any image was set."""


class DeviceError(SegAnyError, RuntimeError):
    """The requested device or precision is not available on this machine."""


class CheckpointError(SegAnyError):
    """A checkpoint file is missing, corrupt, unsafe or does not fit the model."""


class ModelNotFoundError(CheckpointError, KeyError):
    """A model name is not in the registry."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class DownloadError(CheckpointError):
    """A checkpoint could not be downloaded or failed verification."""


class WindowNotPrepared(SegAnyError, RuntimeError):
    """A prompt on a plane seen window by window needs a window not embedded yet, inside
    ``SegAny.without_embedding()`` (the widget's preview: nothing is embedded on its GUI
    thread). ``prepare(plane, region_yxyx=...)`` of the prompt's region now embeds it;
    prompt again after that."""


class CancelledError(SegAnyError):
    """Long work was cancelled by the user."""


class SmallObjectsWarning(UserWarning):
    """Everything mode saw objects too small for one pass over a plane this large.

    The message says the plane's downscale to the model's input and what to do
    (crop, downscale, or tile the plane).
    """


SHOWN_VALUES = 4  # entries an error message lists before "... (N in all)"
_SHOWN_CHARS = 80  # characters of one listed entry


def describe_values(values: object, limit: int = SHOWN_VALUES) -> str:
    """A short text of a user's values for an error message: the first ``limit``
    entries (along the first axis) and how many there are in all.

    Messages must stay short whatever the user passed (10 000 points, a 256 x 256 NaN
    mask); every validator lists values through this function.

    >>> describe_values([[1.0, 2.0], [3.0, 4.0]])
    '[[1.0, 2.0], [3.0, 4.0]]'
    >>> describe_values(list(range(10)))
    '[0, 1, 2, 3, ... (10 in all)]'
    """
    import numpy as np  # here: importing the errors stays free of numpy

    try:
        array = np.asarray(values)
    except (TypeError, ValueError):  # ragged or odd input: its repr, cut
        return _cut(repr(values))
    if array.ndim == 0:
        return _cut(repr(array.tolist()))
    shown = ", ".join(_entry(item) for item in array[:limit])
    more = f", ... ({len(array)} in all)" if len(array) > limit else ""
    return f"[{shown}{more}]"


def _entry(item) -> str:
    """One listed entry: a value, or a row of values (only its start when long)."""
    if getattr(item, "ndim", 0) == 0:
        return _cut(repr(item.tolist() if hasattr(item, "tolist") else item))
    flat = item.ravel()
    text = repr(flat[: 2 * SHOWN_VALUES].tolist())
    return _cut(text if flat.size <= 2 * SHOWN_VALUES else text[:-1] + ", ...]")


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
