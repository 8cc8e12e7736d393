"""``--link propagation`` over several inputs or zarr: each input in this process,
as the single-file run does it.

Linking by propagation carries each plane's objects onto the next plane through the
model, so a stack's planes depend on each other: no units, no parts, no cluster. Each
input is read whole and segmented by ``SegAny.segment_everything_stack``.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from ..core.errors import SegAnyError
from .assemble import write_results
from .inputs import open_array
from .jobs import Job
from .outputs import label_axes, take
from .provenance import write_run_record
from .units import check_settings, session


def run_chained(jobs: list[Job], request) -> None:
    """Segment and write every job's input (a ``BatchRequest``'s settings)."""
    from tqdm import tqdm

    from ..core.everything import EmptyResultWarning

    settings = request.settings
    check_settings(settings)
    sam = session(settings.model)
    jobs = [job for job in jobs if not job.kept]
    total = sum(len(job.source.indices()) for job in jobs)
    with tqdm(total=total, unit="plane", desc="segment-all", disable=request.quiet,
              file=sys.stderr, dynamic_ncols=True) as bar:  # fmt: skip
        for job in jobs:
            start = bar.n
            count = len(job.source.indices())

            def report(progress, start=start, count=count) -> None:
                bar.update(start + int(progress.fraction * count) - bar.n)

            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = _segment(sam, job, request, report)
                for note in caught:  # an empty plane was logged when it happened
                    if not issubclass(note.category, EmptyResultWarning):
                        bar.write(f"napari-segany: warning: {job.source.name}: {note.message}",
                                  file=sys.stderr)  # fmt: skip
                _write(job, result)
                write_run_record(job, request)
            except (SegAnyError, OSError) as error:
                job.error = str(error)
                bar.write(f"napari-segany: error: {job.source.path}: {error}", file=sys.stderr)
                continue
            bar.write(f"{job.target.labels}: {len(result.objects)} objects", file=sys.stdout)


def _segment(sam, job: Job, request, report):
    source, settings = job.source, request.settings
    with open_array(source) as array:
        data = np.asarray(array[...])  # propagation chains the planes: the whole input
    return sam.segment_everything_stack(
        data, source.spatial_axes, source.channel_axis, settings.contrast_limits,
        settings.channels, link="propagation", link_iou=request.link_iou,
        on_progress=report, mode=settings.mode, **dict(settings.params),
    )  # fmt: skip


def _write(job: Job, result) -> None:
    source = job.source
    axes = label_axes(source)
    indices = source.indices()
    planes = ((index, take(result.labels, axes, source, index)) for index in indices)
    top = int(result.labels.max()) if result.labels.size else 0
    write_results(job.target, source, planes, top, result.objects)
