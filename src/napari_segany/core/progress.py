"""Progress of long work, which is written as a generator.

Long operations (embedding a stack, everything mode) are generators that yield
:class:`Progress` records and ``return`` their result. The widget runs them in a
worker thread; scripts and tests run them to completion with :func:`drain`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

Result = TypeVar("Result")


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` steps, and what is happening.

    Attributes
    ----------
    done : int
        Steps finished so far.
    total : int
        Steps in all (0 when unknown).
    message : str
        Short human-readable description of the current step.
    """

    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """``done / total`` clipped to [0, 1]; 0 when the total is unknown."""
        if self.total <= 0:
            return 0.0
        return min(max(self.done / self.total, 0.0), 1.0)


def drain(
    generator: Generator[Progress, Any, Result],
    on_progress: Callable[[Progress], Any] | None = None,
) -> Result:
    """Run ``generator`` to completion and return its return value.

    Parameters
    ----------
    generator
        Yields :class:`Progress` records, returns the result.
    on_progress
        Called with every yielded record (e.g. to log or print it).
    """
    while True:
        try:
            report = next(generator)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(report)
