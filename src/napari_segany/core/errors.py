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
