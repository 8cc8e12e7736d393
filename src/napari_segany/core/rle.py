"""COCO run-length encoding (RLE) of binary masks, compressed to COCO's counts string.

COCO stores a mask of shape (H, W) as the lengths of its runs in column-major
(Fortran) order, alternating background and foreground and starting with a
background run (0 when the first pixel is foreground); the last run is always
written, whichever its value. The *compressed* form turns the counts into text:
from the fourth count on, each count is replaced by its difference to the count two
places before (the previous run of the same value); every value is then written as
signed little-endian 5-bit groups, one character per group, with bit 0x20 set on
every group but the last and 48 (``'0'``) added so the text is printable ASCII
(``'0'`` to ``'o'``). The last group's bit 0x10 is the sign.

Worked example, the 3 x 3 mask (rows top to bottom)::

    0 1 0
    0 1 1        column-major: 0 0 0 | 1 1 0 | 0 1 0
    0 0 0        runs:         3 (bg), 2 (fg), 2 (bg), 1 (fg), 1 (bg)

counts [3, 2, 2, 1, 1]; the fourth and fifth become 1 - 2 = -1 and 1 - 2 = -1;
3 -> chr(48 + 3) = '3', 2 -> '2', 2 -> '2', -1 -> 5-bit group 0b11111 = 31 with the
sign bit set and nothing left -> chr(48 + 31) = 'O'; the string is ``"322OO"``.

Everything here is vectorised over all runs (no Python loop per count or pixel).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["counts_to_strings", "decode_rle", "encode_rle", "plane_counts"]

_OFFSET = 48  # '0'
_MAX_GROUPS = 12  # 5-bit groups of one value: 60 bits, more than any count needs


def encode_rle(mask: np.ndarray) -> dict:
    """The COCO compressed RLE of one binary mask (as ``pycocotools.mask.encode``).

    Parameters
    ----------
    mask : numpy.ndarray, (H, W)
        Nonzero (or True) pixels are the object.

    Returns
    -------
    dict
        ``{"size": [H, W], "counts": str}`` (pycocotools gives ``bytes`` counts;
        a ``str`` goes straight into JSON).

    Raises
    ------
    InputError
        A mask that is not 2D.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"A mask to encode must be 2D (H, W), not of shape {mask.shape}.")
    height, width = mask.shape
    flat = mask.ravel(order="F") != 0
    if flat.size == 0:
        counts = np.zeros(1, np.int64)
    else:
        bounds = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        counts = np.diff(np.concatenate(([0], bounds, [flat.size])))
        if flat[0]:
            counts = np.concatenate(([0], counts))
    text = counts_to_strings(counts.astype(np.int64), np.array([0, counts.size]))[0]
    return {"size": [int(height), int(width)], "counts": text}


def plane_counts(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uncompressed COCO counts of every object of a label plane, in one pass.

    Parameters
    ----------
    plane : numpy.ndarray, (H, W) integer
        Object ids; 0 is background.

    Returns
    -------
    ids : numpy.ndarray, (N,)
        The ids present, ascending.
    counts : numpy.ndarray, (T,) int64
        Every object's counts in turn (as :func:`encode_rle` of ``plane == id``).
    offsets : numpy.ndarray, (N + 1,) int64
        Object ``i`` owns ``counts[offsets[i]:offsets[i + 1]]``.
    """
    flat = plane.ravel(order="F")
    size = flat.size
    starts = np.flatnonzero(np.concatenate(([size > 0], flat[1:] != flat[:-1])))
    ends = np.append(starts[1:], size)
    values = flat[starts]
    keep = values != 0
    starts, ends, values = starts[keep], ends[keep], values[keep]
    order = np.argsort(values, kind="stable")  # by id, then position
    starts, ends, values = starts[order], ends[order], values[order]
    first = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))[: len(values)]
    runs = np.diff(np.append(first, len(values)))  # runs per object
    last = first + runs - 1
    previous_end = np.concatenate(([0], ends[:-1])).astype(np.int64)
    previous_end[first] = 0
    trail = size - ends[last]
    lengths = 2 * runs + (trail > 0)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    counts = np.empty(offsets[-1], np.int64)
    owner = np.repeat(np.arange(len(first)), runs)
    at = offsets[owner] + 2 * (np.arange(len(values)) - first[owner])
    counts[at] = starts - previous_end
    counts[at + 1] = ends - starts
    counts[offsets[1:][trail > 0] - 1] = trail[trail > 0]
    return values[first], counts, offsets


def counts_to_strings(counts: np.ndarray, offsets: np.ndarray) -> list[str]:
    """COCO's compressed counts strings of many masks at once.

    Parameters
    ----------
    counts : numpy.ndarray, (T,) int64
        Uncompressed counts of every mask in turn.
    offsets : numpy.ndarray, (N + 1,) int
        Mask ``i`` owns ``counts[offsets[i]:offsets[i + 1]]``.

    Returns
    -------
    list of str, N entries
    """
    counts = np.asarray(counts, np.int64)
    offsets = np.asarray(offsets, np.int64)
    local = np.arange(counts.size) - np.repeat(offsets[:-1], np.diff(offsets))
    values = counts.copy()
    delta = np.flatnonzero(local > 2)
    values[delta] -= counts[delta - 2]
    groups, characters = [], np.zeros(counts.size, np.int64)
    active = np.ones(counts.size, bool)
    while active.any():
        chunk = values & 0x1F
        values = values >> 5  # arithmetic shift: negative values stay negative
        more = np.where(chunk & 0x10, values != -1, values != 0) & active
        groups.append((active, chunk + 0x20 * more + _OFFSET))
        characters += active
        active = more
    first_char = np.cumsum(characters) - characters
    text = np.empty(int(characters.sum()), np.uint8)
    for k, (where, chars) in enumerate(groups):
        text[first_char[where] + k] = chars[where]
    joined = text.tobytes().decode("ascii")
    bounds = np.concatenate(([0], np.cumsum(characters)))[offsets].tolist()
    return [joined[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def decode_rle(rle: dict) -> np.ndarray:
    """The binary mask of a COCO RLE (compressed string or uncompressed list counts).

    Parameters
    ----------
    rle : dict
        ``{"size": [H, W], "counts": str | bytes | list of int}``.

    Returns
    -------
    numpy.ndarray, (H, W) bool

    Raises
    ------
    InputError
        Missing keys, a malformed string, or counts that do not add up to H * W.
    """
    try:
        height, width = (int(n) for n in rle["size"])
        raw = rle["counts"]
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"An RLE needs 'size': [H, W] and 'counts'; got {str(rle)[:60]!r}."
        ) from error
    if isinstance(raw, (str, bytes)):
        counts = _string_to_counts(raw.encode("ascii") if isinstance(raw, str) else raw)
    else:
        counts = np.asarray(raw, np.int64).ravel()
    if (counts < 0).any() or counts.sum() != height * width:
        raise InputError(
            f"RLE counts add up to {int(counts.sum())} pixels (or are negative), but its "
            f"size {height} x {width} has {height * width}; the RLE is damaged."
        )
    flat = np.repeat(np.arange(counts.size) % 2 == 1, counts)
    return np.ascontiguousarray(flat.reshape(width, height).T)


def _string_to_counts(text: bytes) -> np.ndarray:
    """Uncompressed counts, (T,) int64, of a compressed counts string."""
    chars = np.frombuffer(text, np.uint8).astype(np.int64) - _OFFSET
    if ((chars < 0) | (chars > 63)).any() or (chars.size and chars[-1] & 0x20):
        raise InputError("An RLE counts string holds characters outside '0'..'o' or ends early.")
    ends = np.flatnonzero((chars & 0x20) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1))
    groups = ends - starts + 1
    if (groups > _MAX_GROUPS).any():
        raise InputError("An RLE counts string holds a value too long to be a pixel count.")
    position = np.arange(chars.size) - np.repeat(starts, groups)
    values = np.add.reduceat((chars & 0x1F) << (5 * position), starts) if ends.size else ends
    values = values - ((chars[ends] & 0x10) > 0) * (np.int64(1) << (5 * groups))
    counts = values.astype(np.int64)
    counts[1::2] = np.cumsum(values[1::2])  # count i > 2 was stored minus count i - 2
    counts[2::2] = np.cumsum(values[2::2])
    return counts
