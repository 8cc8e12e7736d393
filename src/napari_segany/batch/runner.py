"""Run a batch: every plane of every input as a unit, here or on a dask cluster.

Units run in this process one after the other (no ``--scheduler``) or as dask tasks
(``--scheduler``, :mod:`.cluster`); either way each finished unit is a part on disk
(:mod:`.parts`). When an input's last unit is done the client numbers its planes
(:mod:`.assemble`), writes its outputs and drops its parts; when every input is
done the parts folder goes. An input that fails (unreadable, a unit that raises or
whose workers keep dying) is reported at once; the others go on and the run exits 1,
keeping the finished parts for a rerun.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError, SegAnyError
from .assemble import number_parts, numbered_planes, write_results
from .cluster import dask_client
from .inputs import expand_inputs
from .jobs import Job, open_jobs, start_jobs
from .outputs import OutputLayout, plan_outputs
from .provenance import write_run_record
from .units import Settings, UnitTask, check_settings, run_unit

PROG = "napari-segany"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRequest:
    """A ``segment-all`` run as the command line gave it.

    Attributes
    ----------
    inputs : list of str
        Files, globs, zarr arrays or OME-Zarr images.
    output : str
        ``-o`` (see :func:`~napari_segany.batch.outputs.plan_outputs`).
    settings : Settings
    axes : str or None
        ``--axes`` for every input.
    link : bool or {"overlap", "propagation"}
    link_iou : float
    table : str or None
        ``--csv``: None (no table), "" (beside the labels) or a path.
    scheduler : str or None
    overwrite, quiet : bool
    """

    inputs: Sequence[str]
    output: str
    settings: Settings
    axes: str | None = None
    link: bool | str = False
    link_iou: float = 0.5
    table: str | None = None
    scheduler: str | None = None
    overwrite: bool = False
    quiet: bool = False


def run_batch(request: BatchRequest) -> int:
    """Run the batch; 0 when every input was written, 1 when some failed.

    Raises
    ------
    SegAnyError
        Before any unit: bad inputs or outputs, settings the model refuses, an
        unreachable scheduler.
    """
    if request.link == "propagation" and request.scheduler is not None:
        raise InputError(
            "--link propagation carries each plane's objects onto the next through one "
            "model session, so it needs the in-process run: drop --scheduler, or link by "
            "overlap (--link) on a cluster."
        )
    paths = expand_inputs(request.inputs)
    layout = plan_outputs(request.output, len(paths), request.table)
    settings = request.settings
    jobs, failed = open_jobs(paths, layout, settings, request.axes, request.overwrite)
    for path, reason in failed:
        _error(f"{path}: {reason}" if str(path) not in reason else reason)
    if request.link == "propagation":
        from .chained import run_chained

        run_chained(jobs, request)
    else:
        active = any(not job.kept for job in jobs)
        with _executor(request.scheduler if active else None) as executor:
            start_jobs(jobs)  # parts are written only once a scheduler answered
            tasks = [task for job in jobs for task in job.tasks(settings)]
            if tasks:
                executor.check(settings)
            _run(jobs, tasks, executor, request)
    return _conclude(jobs, len(failed), layout)


def _run(jobs: list[Job], tasks: list[UnitTask], executor, request: BatchRequest) -> None:
    """Run the units; finish each input as its last unit ends."""
    from tqdm import tqdm

    by_path = {job.source.path: job for job in jobs}
    total = sum(len(job.source.indices()) for job in jobs if not job.kept)
    bar = tqdm(total=total, initial=total - len(tasks), unit="plane", desc="segment-all",
               disable=request.quiet, file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    with bar:
        for job in jobs:
            if job.kept:
                bar.write(f"{PROG}: {job.target.labels}: written by the unfinished run, kept",
                          file=sys.stderr)  # fmt: skip
            elif not job.pending:
                _finish(job, request, bar)
        for task, error in executor.run(tasks):
            bar.update()
            job = by_path[task.source.path]
            if error is not None:
                _fail(job, f"plane {task.index}: {error}", bar)
                continue
            job.pending.discard(task.index)
            if not job.pending and job.error is None:
                _finish(job, request, bar)


def _finish(job: Job, request: BatchRequest, bar) -> None:
    """Number the input's parts, write its outputs, drop its parts."""
    try:
        indices = job.source.indices()
        numbered = number_parts(job.parts, indices, bool(request.link), request.link_iou)
        for _, text in numbered.warnings:
            bar.write(f"{PROG}: warning: {job.source.name}: {text}", file=sys.stderr)
        planes = numbered_planes(job.parts, numbered)
        write_results(job.target, job.source, planes, numbered.top, numbered.objects)
        write_run_record(job, request)
        job.parts.mark_written()
    except (SegAnyError, OSError) as error:
        _fail(job, f"writing its outputs failed: {error}", bar)
        return
    bar.write(f"{job.target.labels}: {len(numbered.objects)} objects", file=sys.stdout)


def _fail(job: Job, message: str, bar=None) -> None:
    """Record an input's first failure and report it at once."""
    if job.error is not None:
        return
    job.error = message
    line = f"{PROG}: error: {job.source.path}: {message}"
    if bar is None:
        sys.stderr.write(line + "\n")
    else:
        bar.write(line, file=sys.stderr)


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")


def _conclude(jobs: list[Job], n_unreadable: int, layout: OutputLayout) -> int:
    """Exit status; the parts folder goes when every input was written."""
    failures = n_unreadable + sum(job.error is not None for job in jobs)
    if failures == 0:
        shutil.rmtree(layout.parts, ignore_errors=True)
        return 0
    kept = f"; finished planes are kept in {layout.parts}" if Path(layout.parts).exists() else ""
    _error(
        f"{failures} of {n_unreadable + len(jobs)} inputs failed{kept}. Fix the cause and "
        "run the same command again: only what is missing is done."
    )
    return 1


class _Here:
    """Units in this process, one after the other."""

    def check(self, settings: Settings) -> None:
        check_settings(settings)

    def run(self, tasks: list[UnitTask]) -> Iterator[tuple[UnitTask, BaseException | None]]:
        for task in tasks:
            try:
                run_unit(task)
            except Exception as error:  # the input fails, the batch goes on
                logger.debug("unit %s failed", task.tag, exc_info=True)
                yield task, error
            else:
                yield task, None


class _OnDask:
    """Units as tasks of a dask cluster (a dead worker's tasks are run again elsewhere)."""

    def __init__(self, client) -> None:
        self.client = client

    def check(self, settings: Settings) -> None:
        self.client.submit(check_settings, settings, pure=False).result()

    def run(self, tasks: list[UnitTask]) -> Iterator[tuple[UnitTask, BaseException | None]]:
        from distributed import as_completed

        futures, tasks_of = [], {}
        for task in tasks:
            future = self.client.submit(run_unit, task, pure=False)
            futures.append(future)
            tasks_of[future.key] = task
        for future in as_completed(futures):
            error = None
            if future.status != "finished":
                try:
                    error = future.exception() or RuntimeError(f"task {future.status}")
                except Exception as raised:  # cancelled futures raise here
                    error = raised
            yield tasks_of.pop(future.key), error
        # the futures (each result a part file's path) are held to the end, so the
        # dashboard's Progress counts the finished planes too


@contextlib.contextmanager
def _executor(scheduler: str | None):
    if scheduler is None:
        yield _Here()
        return
    with dask_client(scheduler) as client:
        yield _OnDask(client)
