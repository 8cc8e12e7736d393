"""Which axis of a plane holds channels, and how its channels become R, G and B.

Axes (:func:`plane_layout`)
    A 2-D array is a grey plane ``(H, W)``. A 3-D array is one plane with its channels
    last, ``(H, W, C)``, when ``C`` is at most :data:`ALWAYS_CHANNELS` (grey, two
    channels, RGB, RGBA) or when ``C`` is shorter than ``H`` and ``W`` and at most
    :data:`MAX_IMPLICIT_CHANNELS`. Any other 3-D array is refused rather than guessed:
    ``(3, H, W)`` looks like channels first (give ``channel_axis=0``) and ``(Z, H, W)``
    like a stack (give one plane, ``stack[z]``, or use ``segment_everything_stack``).
    With ``channel_axis`` the caller says where the channels are: that axis is moved
    last and any number of channels is accepted.

Channels (:func:`fold_channels`, :func:`describe_channels`)
    ``channels=`` (1 to 3 indices) picks channels first, else the first three are used.
    Then, after each channel is scaled to 0..255:

    1. one channel, or exactly one channel with signal (the others constant, e.g. the
       empty green and blue of a red-only RGB image) -> that channel as grey, copied to
       R, G and B: a single stain looks the same in any channel;
    2. two channels -> the model's :class:`ChannelRule`: ``"red_green"`` (SAM's
       weights, natural images: ``(c0, c1, 0)``, both visible) or ``"first"`` (a model
       trained on single stains, the built-in one: ``c0`` as grey, ``c1`` unused);
    3. three channels -> R, G, B as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ImageError

ALWAYS_CHANNELS = 4  # a last axis this short always holds channels (grey .. RGBA)
MAX_IMPLICIT_CHANNELS = 16  # a longer last axis needs channel_axis=
TWO_CHANNEL_RULES = ("red_green", "first")


@dataclass(frozen=True)
class ChannelRule:
    """How a model reads a plane with two channels (declared by its plug-in).

    Attributes
    ----------
    two_channels : {"red_green", "first"}
        ``"red_green"``: ``(c0, c1, 0)`` as R, G, B (SAM's weights); ``"first"``: channel
        ``c0`` as grey and ``c1`` unused (a model trained on one stain at a time).
    """

    two_channels: str = "red_green"

    def __post_init__(self) -> None:
        if self.two_channels not in TWO_CHANNEL_RULES:
            raise ValueError(
                f"two_channels must be one of {TWO_CHANNEL_RULES}, got {self.two_channels!r}"
            )


COLOUR_RULE = ChannelRule("red_green")
SINGLE_STAIN_RULE = ChannelRule("first")


def plane_layout(shape: Sequence[int], channel_axis: int | None = None) -> str:
    """How :func:`channels_last` reads an array of ``shape``: ``"YX"`` or ``"YXC"``.

    Raises
    ------
    ImageError
        The array is not one plane (1-D, 4-D or more), ``channel_axis`` does not exist,
        or a 3-D array's layout would be a guess (module docstring): the message names
        the likely axes and the fix.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        if channel_axis is None:
            return "YX"
        raise ImageError(
            f"channel_axis={channel_axis} was given, but the image of shape {shape} is one "
            "grey plane without a channel axis: leave channel_axis out."
        )
    if len(shape) != 3:
        raise ImageError(
            f"Image has shape {shape} ({len(shape)}D): pass one 2D plane, (H, W) or "
            "(H, W, C); for a stack pass a single plane (stack[z]) or use "
            "segment_everything_stack(stack, ...)."
        )
    if channel_axis is not None:
        if not -3 <= channel_axis < 3:
            raise ImageError(
                f"channel_axis={channel_axis} does not exist in an image of shape {shape}: "
                "give 0, 1 or 2 (or -1)."
            )
        return "YXC"
    first, second, last = shape
    implicit = last < min(first, second) and last <= MAX_IMPLICIT_CHANNELS
    if last <= ALWAYS_CHANNELS or implicit:
        return "YXC"
    raise ImageError(_ambiguous_message(shape))


def _ambiguous_message(shape: tuple[int, int, int]) -> str:
    first = shape[0]
    as_channels = (
        f"if axis 0 holds {first} channels (C, H, W), pass channel_axis=0 "
        f"(or np.moveaxis(image, 0, -1))"
    )
    as_stack = (
        f"if it is a stack of {first} planes (Z, H, W), pass one plane (image[z]) or use "
        "segment_everything_stack(image)"
    )
    hints = (as_channels, as_stack) if first <= ALWAYS_CHANNELS else (as_stack, as_channels)
    return (
        f"Image of shape {shape} is not read as (H, W, C): its last axis ({shape[2]}) is "
        f"too long for channels. {hints[0].capitalize()}; {hints[1]}; if the last axis "
        "really holds channels, pass channel_axis=-1."
    )


def channels_last(image, channel_axis: int | None = None) -> np.ndarray:
    """The plane as ``(H, W)`` or ``(H, W, C)``, its channel axis moved last (a view).

    Parameters
    ----------
    image : array-like, (H, W) or 3-D
    channel_axis : int, optional
        The axis holding channels; None: the rule of :func:`plane_layout`.

    Raises
    ------
    ImageError
        As :func:`plane_layout`.
    """
    array = np.asarray(image)
    plane_layout(array.shape, channel_axis)
    if channel_axis is None:
        return array
    return np.moveaxis(array, channel_axis, -1)


def with_signal(scaled: np.ndarray) -> np.ndarray:
    """(C,) bool: which channels of an (H, W, C) array are not constant."""
    flat = scaled.reshape(-1, scaled.shape[-1])
    return flat.min(axis=0) != flat.max(axis=0)


def channel_sources(
    n_channels: int, rule: ChannelRule = COLOUR_RULE, signal: Sequence[bool] | None = None
) -> tuple[int | None, int | None, int | None]:
    """Which selected channel feeds R, G and B (None: black).

    Parameters
    ----------
    n_channels : int
        Selected channels, 1 to 3.
    rule : ChannelRule
    signal : sequence of bool, optional
        Per selected channel, whether it is not constant (:func:`with_signal`);
        unknown (None): every channel is taken to have signal.
    """
    lit = [i for i in range(n_channels) if signal is None or bool(signal[i])]
    if n_channels == 1 or len(lit) == 1:
        grey = lit[0] if len(lit) == 1 else 0
        return grey, grey, grey
    if n_channels == 2:
        return (0, 1, None) if rule.two_channels == "red_green" else (0, 0, 0)
    return 0, 1, 2


def fold_channels(scaled: np.ndarray, rule: ChannelRule = COLOUR_RULE) -> np.ndarray:
    """(H, W, C) uint8 scaled channels (C = 1 to 3) -> (H, W, 3) uint8 by the rules of
    the module docstring."""
    n_channels = scaled.shape[2]
    signal = with_signal(scaled) if n_channels > 1 else None
    sources = channel_sources(n_channels, rule, signal)
    if sources == (0, 1, 2):
        return np.ascontiguousarray(scaled)
    if sources[0] == sources[1] == sources[2]:
        return np.ascontiguousarray(np.repeat(scaled[:, :, sources[0] : sources[0] + 1], 3, 2))
    rgb = np.zeros(scaled.shape[:2] + (3,), dtype=np.uint8)
    for target, source in enumerate(sources):
        if source is not None:
            rgb[:, :, target] = scaled[:, :, source]
    return rgb


def describe_channels(
    shape: Sequence[int],
    channels: Sequence[int] | None = None,
    rule: ChannelRule = COLOUR_RULE,
    signal: Sequence[bool] | None = None,
    channel_axis: int | None = None,
) -> str:
    """One line saying how a plane of ``shape`` becomes the model's R, G, B.

    Parameters
    ----------
    shape : sequence of int
        The plane's shape, as given (with ``channel_axis`` where it has one).
    channels : sequence of int, optional
        The ``channels=`` selection (indices on the channel axis).
    rule : ChannelRule
        The model's (``SegAny.channel_rule``).
    signal : sequence of bool, optional
        Per selected channel, whether it has signal (unknown: all have).
    channel_axis : int, optional

    Returns
    -------
    str
        E.g. ``"channel 0 as grey (channel 1 unused; pick with channels=[1])"``.

    Raises
    ------
    ImageError
        As :func:`plane_layout`, or on a bad channel selection.
    """
    layout = plane_layout(shape, channel_axis)
    if layout == "YX":
        return "grey"
    n_total = int(shape[channel_axis if channel_axis is not None else -1])
    picked = selected_channels(n_total, channels)
    sources = channel_sources(len(picked), rule, signal)
    unused = [c for c in range(n_total) if c not in {picked[s] for s in sources if s is not None}]
    if sources[0] == sources[1] == sources[2]:
        text = f"channel {picked[sources[0]]} as grey"
    else:
        names = ("R", "G", "B")
        text = ", ".join(
            f"{names[t]} = channel {picked[s]}" for t, s in enumerate(sources) if s is not None
        )
    if unused:
        listed = ", ".join(map(str, unused))
        text += f" (unused: channel {listed}; choose with channels=[...])"
    return text


def selected_channels(n_channels: int, channels: Sequence[int] | None) -> list[int]:
    """Indices (0 .. n_channels - 1) that ``channels=`` picks (default: the first three).

    Raises
    ------
    ImageError
        Not 1 to 3 indices, or an index outside the channel axis.
    """
    if channels is None:
        return list(range(min(n_channels, 3)))
    picked = [int(c) for c in np.atleast_1d(np.asarray(channels))]
    if not 1 <= len(picked) <= 3 or any(not -n_channels <= c < n_channels for c in picked):
        raise ImageError(
            f"channels={list(picked)} is invalid for an image with {n_channels} channel(s) "
            f"on its channel axis: give 1 to 3 indices in 0..{n_channels - 1}."
        )
    return [c % n_channels for c in picked]
