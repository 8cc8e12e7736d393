"""Typed errors of napari-segany.

Every error raised on bad user input or a bad environment is a subclass of
:class:`SegAnyError`, and its message says what went wrong *and* what to do next.
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


class CancelledError(SegAnyError):
    """Long work was cancelled by the user."""
