"""Everything mode on a plane too large for one pass: per window, then stitched.

Phase 1 runs the proposer on every window of the plane's tiling (``core.tiling``), each
window embedded at the model's frame; phase 2 (:meth:`TiledCandidates.select`) selects
each window's objects with the thresholds and stitches them (:func:`core.tiling.stitch`:
each object kept by the tile holding its centre, pieces seen by two windows merged), so
threshold changes still run without the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from ..errors import SmallObjectsWarning
from ..progress import Progress
from ..tiling import Window, stitch
from .candidates import GridCandidates
from .selection import EmptyResultWarning, EverythingObject, EverythingResult, FilterParams

__all__ = ["TiledCandidates", "decode_tiled"]

# window pixels (h, w[, C]) -> phase 1 on them
WindowDecoder = Callable[[np.ndarray], Generator[Progress, None, GridCandidates]]


@dataclass
class TiledCandidates:
    """Phase 1 of a tiled plane: each window's candidates.

    Attributes
    ----------
    image_hw : (int, int)
    windows : list of Window
    parts : list of GridCandidates
        In the windows' frames (each warns for itself, see :meth:`select`).
    """

    image_hw: tuple[int, int]
    windows: list[Window] = field(default_factory=list)
    parts: list[GridCandidates] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def nbytes(self) -> int:
        return sum(part.nbytes for part in self.parts)

    def select(self, filters: FilterParams | None = None, **params) -> EverythingResult:
        """Phase 2 per window, then the plane's objects stitched (module docstring).

        Warns once for the plane: ``EmptyResultWarning`` when no window kept anything,
        the first window's ``SmallObjectsWarning`` when there was one."""
        filters = filters if filters is not None else FilterParams(**params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = [part.select(filters) for part in self.parts]
        labels, sources = stitch(
            self.image_hw, [(w, r.labels) for w, r in zip(self.windows, results)]
        )
        objects = _objects(labels, sources, results, self.windows)
        if not objects:
            _rewarn(caught, EmptyResultWarning)
        _rewarn(caught, SmallObjectsWarning)
        boxes = ndimage.find_objects(labels)
        windows = [
            (box[0].start, box[1].start, labels[box] == k + 1) for k, box in enumerate(boxes)
        ]
        return EverythingResult(labels.astype(np.uint32), objects, len(self), windows)


def _rewarn(caught: list, kind: type[Warning]) -> None:
    for record in caught:
        if issubclass(record.category, kind):
            warnings.warn(str(record.message), kind, stacklevel=3)
            return


def _objects(labels, sources, results, windows) -> list[EverythingObject]:
    """Each stitched object's record: its first piece's scores, its plane extent."""
    count = len(sources)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    boxes = ndimage.find_objects(labels, count)
    by_label = [{o.label: o for o in result.objects} for result in results]
    objects = []
    for k, pieces in enumerate(sources):
        part, piece = pieces[0]
        record = by_label[part][piece]
        y0, x0 = windows[part].yxyx[:2]
        box = boxes[k]
        bbox = (0, 0, 0, 0) if box is None else (box[0].start, box[1].start,
                                                  box[0].stop, box[1].stop)  # fmt: skip
        cy0, cx0, cy1, cx1 = record.crop_box_yxyx
        objects.append(
            replace(
                record,
                label=k + 1,
                area=int(areas[k + 1]),
                visible_area=int(areas[k + 1]),
                bbox_yxyx=bbox,
                point_yx=(record.point_yx[0] + y0, record.point_yx[1] + x0),
                crop_box_yxyx=(cy0 + y0, cx0 + x0, cy1 + y0, cx1 + x0),
            )
        )
    return objects


def decode_tiled(
    image_hw: tuple[int, int],
    windows: list[Window],
    read: Callable[[Window], np.ndarray],
    decode_window: WindowDecoder,
) -> Generator[Progress, None, TiledCandidates]:
    """Phase 1 on every window of a plane, reading each window only when it runs.

    Parameters
    ----------
    image_hw : (int, int)
        The plane's size.
    windows : list of Window
    read : callable
        Window -> its pixels (the plane may be numpy, dask, zarr: read one at a time).
    decode_window : callable
        Window pixels -> generator of phase 1 (the session's, with the plane's reading
        options).

    Yields
    ------
    Progress
        The windows' reports, as ``"tile k/n: ..."`` steps of the plane's.
    """
    result = TiledCandidates((int(image_hw[0]), int(image_hw[1])))
    for number, window in enumerate(windows):
        words = f"tile {number + 1}/{len(windows)}"
        yield Progress(number, len(windows), words)
        steps = decode_window(read(window))
        while True:  # the window's reports, as steps of the plane's (cancel stops there)
            try:
                step = next(steps)
            except StopIteration as done:
                candidates = done.value
                break
            yield Progress(number, len(windows), f"{words}: {step.message}")
        result.windows.append(window)
        result.parts.append(candidates)
    yield Progress(len(windows), len(windows), "tiles decoded")
    return result
