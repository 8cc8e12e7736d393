"""Progress records and drain()."""

from __future__ import annotations

import pytest

from napari_segany.core.progress import Progress, drain


def _work(steps: int):
    for done in range(1, steps + 1):
        yield Progress(done, steps, f"step {done}")
    return steps * 10


def test_drain_returns_the_generator_result_and_reports_every_step():
    seen = []
    assert drain(_work(3), on_progress=seen.append) == 30
    assert [p.done for p in seen] == [1, 2, 3] and seen[-1].message == "step 3"
    assert drain(_work(0)) == 0


def test_drain_propagates_errors_from_the_work():
    def failing():
        yield Progress(0, 1)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        drain(failing())


def test_fraction_is_clipped_and_safe_for_unknown_totals():
    assert Progress(1, 4).fraction == 0.25
    assert Progress(5, 4).fraction == 1.0
    assert Progress(3, 0).fraction == 0.0
