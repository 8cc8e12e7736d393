"""``napari-segany export``: label TIFF / zarr / OME-Zarr -> CSV table and COCO JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_segany.batch.ngff import labels_metadata
from napari_segany.cli import main
from napari_segany.core.exports import TABLE_COLUMNS, coco_annotations, object_table


@pytest.fixture
def labels() -> np.ndarray:
    """(Z, Y, X) = (3, 20, 30) uint16: id 4 in plane 0, ids 4 and 7 in plane 2."""
    stack = np.zeros((3, 20, 30), np.uint16)
    stack[0, 2:5, 3:9] = 4
    stack[2, 10:, 10:] = 7
    stack[2, 0:2, 0:3] = 4
    return stack


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("napari-segany: error: "), err
    return err


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_a_label_tiff_gives_both_files(tmp_path, labels, capsys):
    tiff = tmp_path / "cells.tif"
    tifffile.imwrite(tiff, labels, photometric="minisblack", metadata={"axes": "ZYX"})
    table, coco = tmp_path / "objects.csv", tmp_path / "objects.json"
    assert main(["export", str(tiff), "--table", str(table), "--coco", str(coco)]) == 0
    assert "3 objects" in capsys.readouterr().out
    rows = _read_csv(table)
    assert tuple(rows[0]) == TABLE_COLUMNS
    assert [r[:7] for r in rows[1:]] == [
        ["4", "0", "18", "2", "3", "5", "9"],
        ["4", "2", "6", "0", "0", "2", "3"],
        ["7", "2", "200", "10", "10", "20", "30"],
    ]
    assert json.loads(coco.read_text()) == coco_annotations(labels, file_name="cells.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cells.tif",
        "objects.csv",
        "objects.json",
    ]


def test_a_zarr_array_and_an_ome_zarr_labels_group(tmp_path, labels):
    array = zarr.create_array(str(tmp_path / "plain.zarr"), shape=labels.shape, dtype=labels.dtype)
    array[:] = labels
    group = zarr.open_group(str(tmp_path / "image.zarr" / "labels" / "cells"), mode="w")
    group.attrs.update(labels_metadata("cells", "ZYX"))
    group.create_array("0", shape=labels.shape, dtype=labels.dtype)[:] = labels
    expected = len(object_table(labels)) + 1
    for path in (tmp_path / "plain.zarr", tmp_path / "image.zarr" / "labels" / "cells"):
        table = tmp_path / f"{path.name}.csv"
        assert main(["export", str(path), "--table", str(table)]) == 0
        assert len(_read_csv(table)) == expected
    assert not (tmp_path / "plain.json").exists()


def test_a_2d_tiff_with_a_single_channel_axis(tmp_path):
    plane = np.zeros((1, 9, 11), np.uint8)
    plane[0, 2:4, 5:6] = 255
    tiff = tmp_path / "mask.tif"
    tifffile.imwrite(tiff, plane)
    table = tmp_path / "mask.csv"
    assert main(["export", str(tiff), "--axes", "CYX", "--table", str(table)]) == 0
    assert _read_csv(table)[1][:7] == ["255", "", "2", "2", "5", "4", "6"]


def test_a_missing_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "objects.csv"
    assert main(["export", str(tmp_path / "nope.tif"), "--table", str(out)]) == 1
    assert "nope.tif does not exist" in _one_line_error(capsys)
    assert not out.exists()


def test_float_labels_and_a_missing_output_folder_are_one_line(tmp_path, labels, capsys):
    tiff = tmp_path / "float.tif"
    tifffile.imwrite(
        tiff, labels.astype(np.float32), photometric="minisblack", metadata={"axes": "ZYX"}
    )
    assert main(["export", str(tiff), "--coco", str(tmp_path / "o.json")]) == 1
    assert "must be integers" in _one_line_error(capsys)
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, labels, photometric="minisblack", metadata={"axes": "ZYX"})
    assert main(["export", str(good), "--table", str(tmp_path / "no" / "o.csv")]) == 1
    assert "does not exist" in _one_line_error(capsys)


def test_no_output_is_a_usage_error(tmp_path, labels, capsys):
    tiff = tmp_path / "cells.tif"
    tifffile.imwrite(tiff, labels, photometric="minisblack", metadata={"axes": "ZYX"})
    assert main(["export", str(tiff)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: napari-segany export")
    assert "error: give --table OUT.csv, --coco OUT.json or both" in err
    assert main(["--help"]) == 0 and "export" in capsys.readouterr().out
