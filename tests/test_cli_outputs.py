"""Command-line failures that must come before any work, in one clear line."""

from __future__ import annotations

import dataclasses
import errno
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_segany.cli import main
from napari_segany.core import checkpoints, loading, registry


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder refuse new files: chmod 0o555, and as root (whom chmod does not
    stop) make creating a file there fail as it would for a user."""
    folders: list[Path] = []

    def lock(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        folders.append(folder)
        if os.geteuid() == 0:
            real_mkstemp = tempfile.mkstemp

            def refusing_mkstemp(*args, dir=None, **kwargs):
                if dir is not None and Path(dir).resolve() in [f.resolve() for f in folders]:
                    raise PermissionError(errno.EACCES, "Permission denied", str(dir))
                return real_mkstemp(*args, dir=dir, **kwargs)

            monkeypatch.setattr(tempfile, "mkstemp", refusing_mkstemp)
        return folder

    yield lock
    for folder in folders:
        folder.chmod(0o755)


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a model is loaded (the checks must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the outputs were checked")

    monkeypatch.setattr(loading, "load_model", refuse)


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, np.zeros((2, 32, 32), np.uint16), metadata={"axes": "ZYX"})
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("napari-segany: error: ")
    return err


def test_missing_output_folder_is_refused_before_the_model_loads(tmp_path, image, no_model, capsys):
    missing = tmp_path / "missing_dir"
    assert main(["segment-all", str(image), "-o", str(missing / "out.tif")]) == 1
    err = _one_line_error(capsys)
    assert f"output folder {missing} does not exist" in err
    assert not missing.exists()


def test_missing_table_folder_is_refused_too(tmp_path, image, no_model, capsys):
    table = tmp_path / "tables" / "objects.csv"
    args = [str(image), "-o", str(tmp_path / "out.tif"), "--csv", str(table)]
    assert main(["segment-all", *args]) == 1
    assert f"output folder {table.parent} does not exist" in _one_line_error(capsys)


def test_unwritable_output_folder_is_refused_before_the_model_loads(
    tmp_path, image, no_model, read_only, capsys
):
    locked = read_only(tmp_path / "locked")
    assert main(["segment-all", str(image), "-o", str(locked / "out.tif")]) == 1
    err = _one_line_error(capsys)
    assert f"Cannot write into the output folder {locked}" in err and "writable" in err
    assert list(locked.iterdir()) == []


def test_import_into_a_read_only_cache_names_the_folder_and_the_variable(
    tmp_path, monkeypatch, read_only, capsys
):
    cache = read_only(tmp_path / "cache")
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(cache))
    source = tmp_path / "download.pth"
    source.write_bytes(b"weights" * 100)
    assert main(["import", "vit_b", str(source)]) == 1
    err = _one_line_error(capsys)
    assert str(cache) in err and "SEGANY_CACHE_DIR" in err
    assert list(cache.iterdir()) == []


def test_fetch_into_a_read_only_cache_fails_before_downloading(
    tmp_path, monkeypatch, read_only, capsys
):
    cache = read_only(tmp_path / "cache")
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(cache))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    unreachable = dataclasses.replace(
        registry.REGISTRY["vit_t"], url="http://127.0.0.1:9/never-contacted.pt"
    )
    monkeypatch.setitem(registry.REGISTRY, "vit_t", unreachable)
    assert main(["fetch", "-q", "vit_t"]) == 1
    err = _one_line_error(capsys)  # not "Could not download": checked before it
    assert f"Cannot write to the checkpoint cache folder {cache}" in err
    assert "SEGANY_CACHE_DIR" in err


def test_an_output_that_is_a_folder_is_refused_before_the_model_loads(
    tmp_path, image, no_model, capsys
):
    folder = tmp_path / "results"
    folder.mkdir()
    args = ["segment-all", str(image), "-o", str(folder), "--overwrite"]
    assert main(args) == 1
    assert f"{folder} is a folder" in _one_line_error(capsys)


def test_importing_a_folder_says_it_is_a_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    assert main(["import", "vit_b", str(tmp_path)]) == 1
    assert "is a directory" in _one_line_error(capsys)
