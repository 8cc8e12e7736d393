"""A batch's inputs as jobs: each input opened (metadata only), its target, its parts.

Everything here runs before any unit, so a bad output name or an existing file
stops the run at once; an input that cannot be read fails alone (the others run).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.errors import InputError, SegAnyError
from ..core.image import validate_plane
from .inputs import Source, identity, open_source
from .ngff import ngff_axes
from .outputs import OutputLayout, Target
from .parts import InputParts
from .units import Settings, UnitTask


@dataclass
class Job:
    """One input of a batch and the state of its units.

    Attributes
    ----------
    source, target, parts
    pending : set of tuple
        Plane indices without a finished part.
    error : str or None
        Why the input failed (set once; the run exits 1).
    kept : bool
        Its outputs were written by an unfinished run of the same settings: skipped.
    """

    source: Source
    target: Target
    parts: InputParts
    pending: set = field(default_factory=set)
    error: str | None = None
    kept: bool = False

    def tasks(self, settings: Settings) -> list[UnitTask]:
        """Units still to run, in plane order."""
        return [
            UnitTask(self.source, index, settings, str(self.parts.path(index)), self.parts.digest)
            for index in self.source.indices()
            if index in self.pending
        ]


def open_jobs(
    paths: Sequence[Path], layout: OutputLayout, settings: Settings, axes: str | None,
    overwrite: bool,
) -> tuple[list[Job], list[tuple[Path, str]]]:  # fmt: skip
    """Jobs of the readable inputs, and (path, reason) of the others.

    Raises
    ------
    InputError
        Two inputs with one output name, an output that would replace an input, or
        that exists (without ``overwrite``; outputs an unfinished run of the same
        settings wrote are kept and their inputs skipped).
    """
    jobs, failed, names = [], [], {}
    for path in paths:
        try:
            source = open_source(path, axes)
            _check_planes(source, settings)
            if layout.kind == "zarr":
                ngff_axes(source)
        except SegAnyError as error:
            failed.append((path, str(error)))
            continue
        if source.name in names:
            raise InputError(
                f"{names[source.name]} and {path} would write the same output "
                f"({source.name}); run them separately or rename one."
            )
        names[source.name] = path
        target = layout.target(source)
        manifest = {"version": __version__, "settings": settings.as_dict(),
                    "input": identity(source), "target": str(target.labels)}  # fmt: skip
        parts = InputParts(layout.parts / source.name, manifest)
        _check_target(source, target, parts, overwrite)
        jobs.append(Job(source, target, parts, kept=parts.written and _exists(target)))
    return jobs, failed


def start_jobs(jobs: Sequence[Job]) -> None:
    """Ready each job's parts folder and find its units still to run."""
    for job in jobs:
        if job.kept:
            continue
        job.parts.start(fresh=job.parts.written)  # written, then removed: all again
        job.pending = {i for i in job.source.indices() if not job.parts.done(i)}


def _check_planes(source: Source, settings: Settings) -> None:
    """Channels and contrast limits that fit the input's planes (no pixel read)."""
    plane = np.broadcast_to(np.zeros((), np.dtype(source.dtype)), source.plane_shape())
    channel = None if source.channel_axis is None else -1
    validate_plane(plane, settings.contrast_limits, settings.channels, channel)


def _exists(target: Target) -> bool:
    return target.labels.exists() or (target.table is not None and target.table.exists())


def _check_target(source: Source, target: Target, parts: InputParts, overwrite: bool) -> None:
    given = Path(os.path.abspath(source.path))
    for path in (target.labels, target.table):
        if path is not None and Path(os.path.abspath(path)) == given:
            raise InputError(
                f"The output {path} would replace the input {source.path}; choose another -o."
            )
    if _exists(target) and not overwrite and not parts.written:
        found = target.labels if target.labels.exists() else target.table
        raise InputError(f"{found} exists; pass --overwrite to replace it.")
