"""Background work for the widget: threads (or inline), progress, cancel, ETA, errors.

Long work is a plain function or a generator yielding
:class:`napari_segany.core.progress.Progress`. It runs in a napari ``thread_worker``
so the event loop keeps running, or inline when ``SEGANY_NOTHREADS=1`` (tests,
debugging). Errors become napari notifications that say what to do next.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error

from napari_segany.app.sessions import PromptSession
from napari_segany.core.errors import SegAnyError
from napari_segany.core.progress import Progress

logger = logging.getLogger(__name__)

OOM_ADVICE = (
    "The GPU ran out of memory. Close other programs using the GPU, pick a smaller "
    "model (vit_t or vit_b) or device 'cpu', then press Load model again. "
    "Your labels are unchanged."
)


def threads_disabled() -> bool:
    """True when ``SEGANY_NOTHREADS=1`` asks to run all work inline."""
    return os.environ.get("SEGANY_NOTHREADS") == "1"


def describe_error(error: BaseException) -> str:
    """A message for the user: what went wrong and what to do next."""
    if type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower():
        _free_gpu_memory()
        return OOM_ADVICE
    if isinstance(error, SegAnyError):
        return str(error)
    if isinstance(error, MemoryError):
        return "Out of memory: close other programs or use a smaller image, then try again."
    logger.error("unexpected error in napari-segany", exc_info=error)
    return (
        f"Unexpected {type(error).__name__}: {error}. Nothing was changed; the terminal "
        "shows the details (please report them at the napari-segany issue tracker)."
    )


def _free_gpu_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        logger.debug("could not empty the CUDA cache", exc_info=True)


def notify_error(error: BaseException, context: str = "") -> str:
    """Show ``error`` as a napari error notification; return the text shown."""
    text = describe_error(error)
    text = f"{context}: {text}" if context else text
    show_error(text)
    return text


def eta_text(report: Progress, started: float, now: float | None = None) -> str:
    """``"3/10 planes, about 12 s left"`` from a progress report and the start time."""
    now = time.perf_counter() if now is None else now
    base = f"{report.done}/{report.total}"
    if report.done <= 0 or report.total <= 0 or report.done >= report.total:
        return base
    remaining = (now - started) / report.done * (report.total - report.done)
    if remaining >= 90:
        return f"{base}, about {remaining / 60:.0f} min left"
    return f"{base}, about {remaining:.0f} s left"


def prepare_cancellable(
    segany: PromptSession,
    plane: Any,
    contrast_limits: Any,
    region_yxyx: Any = None,
    cancel_event: threading.Event | None = None,
) -> Any:
    """Worker body: ``segany.prepare(plane)`` (the embedding and the model's per-plane
    preparation; for a plane seen window by window, the window of ``region_yxyx``),
    stopping within one encoder block on cancel; returns the embedding.

    So the first prompt on the plane never waits for the model on the GUI thread.

    Raises
    ------
    CancelledError
        When ``cancel_event`` is set while the encoder runs (see ``core.cancel``).
    """
    from napari_segany.core.cancel import image_encoder_of, stop_on

    with stop_on(image_encoder_of(segany), cancel_event):  # zoomed tiles and views too
        return segany.prepare(plane, contrast_limits=contrast_limits, region_yxyx=region_yxyx)


def _report_errors_only_once(worker: Any) -> None:
    """Stop napari from also relaying the worker's errors (e.g. a cancel) as tracebacks.

    :meth:`Job._error` shows each error once, with a next step, and ignores the
    ``CancelledError`` of cancelled work.
    """
    relay = getattr(worker, "_relay_error", None)
    if relay is not None:
        try:
            worker.errored.disconnect(relay)
        except (TypeError, RuntimeError):
            logger.debug("napari's error relay was not connected", exc_info=True)


class Job:
    """One piece of background work; :meth:`cancel` stops it and drops its result.

    Cancel sets :attr:`cancel_event` (work started with ``pass_cancel_event=True``
    receives it as its last argument and stops on it, e.g. with
    :func:`prepare_cancellable`) and stops a generator at its next ``yield``.

    Parameters
    ----------
    work : callable
        Plain function or generator function (yielding Progress, returning the result).
    on_done : callable(result)
    on_error : callable(exception)
    on_progress : callable(Progress), optional
    pass_cancel_event : bool
        Call ``work(*args, cancel_event)``.
    """

    def __init__(
        self,
        work: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], Any],
        on_error: Callable[[BaseException], Any],
        on_progress: Callable[[Progress], Any] | None = None,
        pass_cancel_event: bool = False,
    ) -> None:
        self.cancel_event = threading.Event()
        self._work = work
        self._args = (*args, self.cancel_event) if pass_cancel_event else args
        self._on_done, self._on_error = on_done, on_error
        self._on_progress = on_progress
        self.cancelled = False
        self.finished = False
        self.started = time.perf_counter()
        self._worker = None

    def start(self) -> Job:
        """Run the work in a thread (or inline under ``SEGANY_NOTHREADS=1``)."""
        if threads_disabled():
            self._run_inline()
            return self
        worker = create_worker(
            self._work, *self._args, _start_thread=False, _connect={"errored": self._error}
        )
        _report_errors_only_once(worker)
        worker.returned.connect(self._done)
        if inspect.isgeneratorfunction(self._work):
            worker.yielded.connect(self._progress)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()
        return self

    def _run_inline(self) -> None:
        try:
            result = self._work(*self._args)
            if inspect.isgenerator(result):
                result = self._drain(result)
        except BaseException as error:
            self._finished()
            self._error(error)
            return
        self._finished()
        self._done(result)

    def _drain(self, generator: Any) -> Any:
        while True:
            try:
                report = next(generator)
            except StopIteration as stop:
                return stop.value
            self._progress(report)
            if self.cancelled:
                generator.close()
                return None

    def cancel(self) -> None:
        """Stop the work (generator: at its next step); its result is ignored."""
        self.cancelled = True
        self.cancel_event.set()
        if self._worker is not None and hasattr(self._worker, "quit"):
            self._worker.quit()

    def _progress(self, report: Any) -> None:
        if not self.cancelled and self._on_progress is not None and isinstance(report, Progress):
            self._on_progress(report)

    def _done(self, result: Any) -> None:
        self.finished = True
        if not self.cancelled:
            self._on_done(result)

    def _error(self, error: BaseException) -> None:
        self.finished = True
        if not self.cancelled:
            self._on_error(error)

    def _finished(self) -> None:
        self.finished = True
