"""Atomic writes and the writable-folder probe."""

from __future__ import annotations

import tempfile

import pytest

from napari_segany.core.files import atomic_path, write_problem


def test_target_replaced_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "labels.tif"
    target.write_bytes(b"old labels")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half of the new")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old labels"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]  # no leftovers

    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".tif"
        temporary.write_bytes(b"new labels")
        assert target.read_bytes() == b"old labels"  # unchanged until the block ends
    assert target.read_bytes() == b"new labels"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]


def test_write_problem_reports_a_refusing_folder(tmp_path, monkeypatch):
    assert write_problem(tmp_path) is None
    assert list(tmp_path.iterdir()) == []  # the probe is removed

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    problem = write_problem(tmp_path)
    assert isinstance(problem, PermissionError) and problem.strerror == "Permission denied"


def test_files_written_atomically_get_the_usual_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "out.csv") as temporary:
            temporary.write_text("a,b\n")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o640
