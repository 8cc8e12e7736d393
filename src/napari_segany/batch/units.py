"""One work unit -- everything mode on one plane of one input -- and the model cache of
the process running it.

A unit runs phase 1 (the proposer's candidates) and phase 2 (the selection) on its
plane exactly as the in-process stack run does for that plane
(``SegAny.segment_everything_stack``: ``decode_everything`` with the same contrast
limits, channels, mode and parameters, then ``candidates.select``), and saves the
plane's labels (ids 1..n of the plane) with its object records as a part file. The
client numbers the planes into stack ids afterwards (``batch.assemble``).

Each process loads the model once: :func:`session` keeps one ``SegAny`` per
(model, checkpoint, device, precision), shared by the units the process runs.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from .inputs import Source, read_plane
from .parts import save_part

# Test-only: a folder where each unit records its run and looks for markers that make
# it crash (``crash-<tag>``: the worker process exits, once) or fail (``fail-<tag>``:
# it raises). ``<tag>`` is ``<input name>-<plane index joined by '_'>``. Never set it
# outside the test suite.
TEST_HOOK_ENV = "NAPARI_SEGANY_TEST_HOOK_DIR"

_SESSIONS: dict[ModelSpec, object] = {}
_LOCK = threading.Lock()  # a session is not thread safe: one unit at a time per process


@dataclass(frozen=True)
class ModelSpec:
    """The model a run uses, as the command line named it."""

    model: str
    checkpoint: str | None
    device: str
    precision: str
    tiling: str | tuple[int, int] | None = "auto"


@dataclass(frozen=True)
class Settings:
    """Everything a unit's result depends on besides its input plane.

    Attributes
    ----------
    model : ModelSpec
    mode : str
    params : tuple of (name, value)
        The proposer's and selection's parameters given on the command line, sorted.
    contrast_limits : (low, high) or None
        None: each plane's robust percentiles, as in the in-process run.
    channels : tuple of int or None
    """

    model: ModelSpec
    mode: str
    params: tuple[tuple[str, object], ...]
    contrast_limits: tuple[float, float] | None
    channels: tuple[int, ...] | None

    def as_dict(self) -> dict:
        """JSON-ready form (for the parts manifest)."""
        return {
            "model": vars(self.model),
            "mode": self.mode,
            "params": [list(item) for item in self.params],
            "contrast_limits": None if self.contrast_limits is None else list(self.contrast_limits),
            "channels": None if self.channels is None else list(self.channels),
        }


@dataclass(frozen=True)
class UnitTask:
    """One plane of one input to segment, and where its part goes."""

    source: Source
    index: tuple[int, ...]
    settings: Settings
    part: str
    digest: str

    @property
    def tag(self) -> str:
        return f"{self.source.name}-{'_'.join(str(i) for i in self.index)}"


def session(spec: ModelSpec):
    """This process's session on ``spec``'s model (loaded on first use, then kept)."""
    with _LOCK:
        found = _SESSIONS.get(spec)
        if found is None:
            from ..api import SegAny

            found = SegAny(
                spec.model,
                checkpoint=spec.checkpoint,
                device=spec.device,
                precision=spec.precision,
                tiling=spec.tiling,
            )
            _SESSIONS[spec] = found
        return found


def check_settings(settings: Settings) -> None:
    """Load the model and check the mode and parameters (before any unit runs).

    Raises the session's error (e.g. ``InputError`` on an unknown parameter,
    ``CheckpointError``) so a bad setting stops the run at once, not once per unit.
    """
    session(settings.model).everything.plan(settings.mode, **dict(settings.params))


def run_unit(task: UnitTask) -> str:
    """Segment the task's plane and save its part; return the part's path.

    Phase-2 warnings (nothing kept, objects too small) are recorded in the part, not
    logged here: the client reports them, named by input and plane.
    """
    _test_hook(task)
    sam = session(task.settings.model)
    plane = read_plane(task.source, task.index)
    with _LOCK:
        result, caught = _segment(sam, plane, task)
    save_part(Path(task.part), result.labels, result.objects, caught, task.digest)
    return task.part


def _segment(sam, plane, task: UnitTask):
    """(EverythingResult of the plane with ids 1..n, [(warning class name, message)]).

    Every warning of the unit is recorded (the command line reports them all, as the
    single-file run does); the selection's own log line of an empty result is dropped.
    """
    from ..core.everything.selection import logger as selection_logger
    from ..core.progress import drain

    settings, params = task.settings, dict(task.settings.params)
    channel = None if task.source.channel_axis is None else -1  # planes come channels last
    _, _, filters = sam.everything.plan(settings.mode, **params)
    quiet = _DropRecords()
    selection_logger.addFilter(quiet)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            steps = sam.decode_everything(
                plane, settings.contrast_limits, settings.channels, settings.mode, channel,
                **params,
            )  # fmt: skip
            result = drain(steps).select(filters)
    finally:
        selection_logger.removeFilter(quiet)
    return result, [(w.category.__name__, str(w.message)) for w in caught]


class _DropRecords(logging.Filter):
    """Keeps the selection's log line of a warning the part records (reported once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def _test_hook(task: UnitTask) -> None:
    """Test-only (``TEST_HOOK_ENV``): record this run; crash once or fail on a marker."""
    folder = os.environ.get(TEST_HOOK_ENV)
    if not folder:
        return
    runs = Path(folder) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{task.tag}.{os.getpid()}.{uuid.uuid4().hex}").touch()
    crash = Path(folder) / f"crash-{task.tag}"
    try:
        os.rename(crash, crash.with_name(crash.name + ".done"))  # claimed by one attempt
    except FileNotFoundError:
        pass
    else:
        os._exit(1)
    if (Path(folder) / f"fail-{task.tag}").exists():
        raise RuntimeError(f"test hook: unit {task.tag} fails")
