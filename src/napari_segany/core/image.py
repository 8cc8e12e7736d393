"""Any 2D microscopy plane -> the uint8 RGB image SAM expects -> the model input tensor.

Conversion rules of :func:`to_model_rgb` (the user documentation copies them):

Shapes
    A plane is ``(H, W)`` (grey) or ``(H, W, C)`` with the channel axis last;
    ``channel_axis=`` names another channel axis (moved last). Which 3-D arrays are
    read as ``(H, W, C)`` without it, and which are refused as a likely ``(C, H, W)``
    or ``(Z, H, W)``: :mod:`.channels`. 1D, 4D or more and zero-size arrays raise
    :class:`ImageError`.
Channels
    ``channels`` (1 to 3 channel indices) picks the channels first (default: the
    first three, so RGBA drops alpha). One channel, or exactly one channel with
    signal, is grey replicated to R, G and B; two channels follow the model's
    :class:`~.channels.ChannelRule` (``(c0, c1, 0)`` for SAM's weights, ``c0`` as grey
    for the built-in model); three are RGB (:mod:`.channels`).
Intensities
    * ``bool`` -> 0 and 255 (contrast limits are ignored).
    * ``uint8`` without contrast limits passes through unchanged (exactly what
      upstream SAM gets).
    * With ``contrast_limits = (lo, hi)`` (any dtype), values are scaled linearly,
      ``lo -> 0`` and ``hi -> 255``, and clipped: what the user sees is what SAM
      sees. One ``(lo, hi)`` pair applies to every channel; a ``(k, 2)`` array gives
      one pair per selected channel.
    * Any other dtype without contrast limits (16-bit, float, signed ...) is scaled
      per channel between its robust 0.5 and 99.5 percentiles of the finite
      values, never over the full dtype range (which would crush 16-bit data).
      When those percentiles are equal but the data are not constant (e.g. a few
      bright spots on a flat background), min and max are used instead. 8/16-bit
      integers use an exact histogram; float planes over ~4 million pixels a
      regular subsample.
    * NaN -> 0; +inf -> 255; -inf -> 0 (with or without contrast limits).
    * A constant plane (or channel) gives 0, without any division by zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .channels import (
    COLOUR_RULE,
    ChannelRule,
    channels_last,
    fold_channels,
    selected_channels,
)
from .errors import ImageError

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
_PERCENTILE_SAMPLES = 1 << 22  # float data: percentiles on at most ~4M values

_ACCEPTED = (
    "Pass one 2D plane: (H, W) grey or (H, W, C) with the channel axis last; "
    "for a stack (Z, T, ...) pass a single plane, e.g. stack[z]."
)


def validate_plane(
    image: np.ndarray,
    contrast_limits: Sequence[float] | np.ndarray | None = None,
    channels: Sequence[int] | None = None,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Check a plane and its conversion options; return it as ``(H, W, C)``.

    Parameters
    ----------
    image : array-like, (H, W) or (H, W, C)
        Any numeric or bool dtype; another channel axis with ``channel_axis``.
    contrast_limits, channels, channel_axis
        As in :func:`to_model_rgb`.

    Returns
    -------
    numpy.ndarray, (H, W, C')
        The selected channels (``C' <= 3``), a view where possible.

    Raises
    ------
    ImageError
        On a shape, dtype, channel index or contrast limit the model cannot use.
    """
    array = np.asarray(image)
    if array.dtype.kind not in "biuf":
        raise ImageError(f"Image dtype {array.dtype} is not numeric. {_ACCEPTED}")
    array = channels_last(array, channel_axis)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.size == 0:
        raise ImageError(f"Image of shape {np.shape(image)} is empty. {_ACCEPTED}")
    if channels is None:
        array = array[:, :, :3]  # a view
    else:
        array = array[:, :, selected_channels(array.shape[2], channels)]
    _check_contrast_limits(contrast_limits, array.shape[2])
    return array


def _check_contrast_limits(contrast_limits, n_channels: int) -> None:
    if contrast_limits is None:
        return
    limits = np.asarray(contrast_limits, dtype=np.float64)
    if limits.shape not in ((2,), (n_channels, 2)):
        raise ImageError(
            f"contrast_limits of shape {limits.shape} do not fit: give (low, high) or one "
            f"(low, high) pair per selected channel ({n_channels}, 2)."
        )
    limits = limits.reshape(-1, 2)
    if not np.all(np.isfinite(limits)) or np.any(limits[:, 1] <= limits[:, 0]):
        raise ImageError(
            f"contrast_limits {limits.tolist()} are invalid: low and high must be finite "
            "numbers with low < high."
        )


def to_model_rgb(
    image: np.ndarray,
    contrast_limits: Sequence[float] | np.ndarray | None = None,
    channels: Sequence[int] | None = None,
    channel_axis: int | None = None,
    rule: ChannelRule = COLOUR_RULE,
) -> np.ndarray:
    """Convert one 2D plane to the ``(H, W, 3)`` uint8 RGB image SAM expects.

    See the module docstring for the exact rules (shapes, channels, intensities).

    Parameters
    ----------
    image : array-like, (H, W) or (H, W, C)
        The plane, channel axis last (or ``channel_axis``); any numeric or bool dtype.
    contrast_limits : (low, high) or array (k, 2), optional
        Display range mapped to 0..255 (one pair, or one per selected channel).
    channels : sequence of 1 to 3 int, optional
        Channel indices to use, in R, G, B order.
    channel_axis : int, optional
        The axis holding channels, when it is not the last or the layout is ambiguous.
    rule : ChannelRule
        The model's reading of two channels (``SegAny.channel_rule``).

    Returns
    -------
    numpy.ndarray, (H, W, 3) uint8

    Raises
    ------
    ImageError
        On shapes, channels or contrast limits the model cannot use.
    """
    array = validate_plane(image, contrast_limits, channels, channel_axis)
    if array.dtype == np.bool_:
        scaled = array.astype(np.uint8) * np.uint8(255)
    elif array.dtype == np.uint8 and contrast_limits is None:
        scaled = array
    else:
        limits = contrast_limits
        if limits is None:
            limits = [robust_limits(array[:, :, c]) for c in range(array.shape[2])]
        limits = np.broadcast_to(np.asarray(limits, dtype=np.float64), (array.shape[2], 2))
        scaled = np.stack(
            [_scale_channel(array[:, :, c], *limits[c]) for c in range(array.shape[2])], axis=2
        )
    return fold_channels(scaled, rule)


def robust_limits(channel: np.ndarray) -> tuple[float, float]:
    """Robust (low, high) of one channel (the default contrast limits: its 0.5 and 99.5
    percentiles); equal values mean a constant channel."""
    if channel.dtype.kind in "iu" and channel.dtype.itemsize <= 2:
        return _integer_limits(channel)
    values = channel.ravel()
    if values.size > _PERCENTILE_SAMPLES:
        values = values[:: values.size // _PERCENTILE_SAMPLES + 1]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:
        low, high = np.min(values), np.max(values)
    return float(low), float(high)


def _integer_limits(channel: np.ndarray) -> tuple[float, float]:
    """Exact percentiles of 8/16-bit integers from a histogram (fast, no sorting)."""
    offset = -int(np.iinfo(channel.dtype).min)
    counts = np.bincount((channel.ravel().astype(np.int64) + offset), minlength=1)
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    low = np.searchsorted(cumulative, total * LOW_PERCENTILE / 100.0, side="right")
    high = np.searchsorted(cumulative, total * HIGH_PERCENTILE / 100.0, side="left")
    if high <= low:
        present = np.flatnonzero(counts)
        low, high = present[0], present[-1]
    return float(low - offset), float(high - offset)


def _scale_channel(channel: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear map low -> 0, high -> 255, clipped and rounded; NaN -> 0, constant -> 0."""
    if not high > low:  # constant channel: 0, except values above it (+inf) -> 255
        return np.where(channel > high, np.uint8(255), np.uint8(0))
    scaled = channel.astype(np.float32)
    scaled -= np.float32(low)
    scaled *= np.float32(255.0 / (high - low))
    np.clip(scaled, 0.0, 255.0, out=scaled)  # maps +-inf to 255 / 0; NaN stays NaN
    np.nan_to_num(scaled, copy=False, nan=0.0)
    return np.rint(scaled, out=scaled).astype(np.uint8)


def model_input_hw(
    original_hw: tuple[int, int], image_size: int = 1024, max_upscale: float | None = None
) -> tuple[int, int]:
    """Size ``(h', w')`` of a plane in the model frame (before zero padding).

    SAM's rule: the plane is resized so its long side is ``image_size``, rounding half up
    exactly as upstream SAM does. With ``max_upscale`` (a model's declared limit, e.g.
    the built-in model's), a small plane is enlarged at most that many times and the
    rest of the frame is padding. Either way each side is at least one pixel (a 3 x 5000
    plane keeps a row in a 1024 frame).

    Parameters
    ----------
    original_hw : (int, int)
        (H, W) of the plane, each >= 1.
    image_size : int
        Side of the square model frame.
    max_upscale : float, optional
        Largest enlargement; None: no limit (SAM).

    Returns
    -------
    (int, int)
        (h', w'), each in 1 .. image_size.
    """
    height, width = original_hw
    scale = image_size / max(height, width)
    if max_upscale is not None:
        scale = min(scale, float(max_upscale))
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def resize_longest_side(
    rgb_uint8: np.ndarray,
    target: int = 1024,
    device: torch.device | str = "cpu",
    max_upscale: float | None = None,
) -> torch.Tensor:
    """Resize a uint8 RGB image so its long side is ``target``, as upstream SAM does.

    Upstream resizes with PIL's bilinear filter (antialiased when shrinking), in two
    passes, each rounded to uint8. We do the same with torch: width first, then height,
    each pass bilinear with ``antialias=True`` and rounded half up. This reproduces
    PIL exactly for most shapes and within one grey level otherwise.

    Parameters
    ----------
    rgb_uint8 : numpy.ndarray, (H, W, 3) uint8
    target : int
        Long side of the result.
    device : torch device
        Where the resize runs and the result lives.
    max_upscale : float, optional
        Enlarge at most this many times (the long side may then stay below ``target``).

    Returns
    -------
    torch.Tensor, (1, 3, h', w') float32
        Integer-valued in 0..255,
        ``(h', w') = model_input_hw((H, W), target, max_upscale)``.
    """
    pixels = torch.from_numpy(np.ascontiguousarray(rgb_uint8)).to(device)
    pixels = pixels.permute(2, 0, 1)[None].float()
    height, width = model_input_hw(rgb_uint8.shape[:2], target, max_upscale)
    if width != pixels.shape[-1]:
        pixels = _resize_pass(pixels, (pixels.shape[-2], width))
    if height != pixels.shape[-2]:
        pixels = _resize_pass(pixels, (height, width))
    return pixels


def _resize_pass(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    resized = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized.add_(0.5).floor_().clamp_(0.0, 255.0)


def preprocess(
    rgb_uint8: np.ndarray,
    image_size: int = 1024,
    device: torch.device | str = "cpu",
    pixel_mean: Sequence[float] = PIXEL_MEAN,
    pixel_std: Sequence[float] = PIXEL_STD,
    max_upscale: float | None = None,
) -> torch.Tensor:
    """Model input of a uint8 RGB image: resize, normalise, zero-pad.

    Parameters
    ----------
    rgb_uint8 : numpy.ndarray, (H, W, 3) uint8
    image_size : int
        Square side ``S`` of the model input (``Sam.image_size``, 1024 for SAM).
    device : torch device
    pixel_mean, pixel_std : 3 floats
        Per-channel normalisation, ``(x - mean) / std``.
    max_upscale : float, optional
        The model's largest enlargement (:func:`model_input_hw`); None: SAM's rule.

    Returns
    -------
    torch.Tensor, (1, 3, S, S) float32 on ``device``
        The resized image in the top-left corner, zeros (after normalisation) elsewhere.
    """
    resize_device = "cpu" if torch.device(device).type == "mps" else device
    pixels = resize_longest_side(rgb_uint8, image_size, resize_device, max_upscale).to(device)
    pixels = _normalise(pixels, pixel_mean, pixel_std)
    height, width = pixels.shape[-2:]
    return F.pad(pixels, (0, image_size - width, 0, image_size - height))


def preprocess_square(
    rgb_uint8: np.ndarray,
    image_size: int = 1024,
    device: torch.device | str = "cpu",
    pixel_mean: Sequence[float] = PIXEL_MEAN,
    pixel_std: Sequence[float] = PIXEL_STD,
) -> torch.Tensor:
    """Model input of a uint8 RGB image for SAM 2: resized to a square, normalised.

    As the reference (``ToTensor``, ``Resize((S, S))``, ``Normalize``): values in
    [0, 1], one bilinear resize with antialiasing to ``image_size`` x ``image_size``
    (the aspect is not kept, nothing is padded), then ``(x - mean) / std`` with the
    0..255 constants divided by 255.

    Returns
    -------
    torch.Tensor, (1, 3, S, S) float32 on ``device``
    """
    resize_device = "cpu" if torch.device(device).type == "mps" else device
    pixels = torch.from_numpy(np.ascontiguousarray(rgb_uint8)).to(resize_device)
    pixels = pixels.permute(2, 0, 1)[None].float() / 255.0
    size = (image_size, image_size)
    if tuple(pixels.shape[-2:]) != size:
        pixels = F.interpolate(pixels, size, mode="bilinear", align_corners=False, antialias=True)
    return _normalise(pixels.to(device), pixel_mean, pixel_std, scale=1 / 255.0)


def _normalise(
    pixels: torch.Tensor, pixel_mean: Sequence[float], pixel_std: Sequence[float], scale=1.0
) -> torch.Tensor:
    """``(pixels - mean * scale) / (std * scale)`` per channel of (1, 3, H, W) pixels
    (``scale`` 1/255 for values in [0, 1] against 0..255 constants)."""
    as_tensor = {"dtype": torch.float32, "device": pixels.device}
    mean = torch.as_tensor(pixel_mean, **as_tensor).view(1, 3, 1, 1) * scale
    std = torch.as_tensor(pixel_std, **as_tensor).view(1, 3, 1, 1) * scale
    return (pixels - mean) / std
