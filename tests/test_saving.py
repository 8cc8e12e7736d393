"""Label images to TIFF and OME-Zarr and back (``napari_segany.saving``)."""

import json

import numpy as np
import pytest
import tifffile
import zarr

from napari_segany import load_labels, save_labels
from napari_segany.core.errors import InputError
from napari_segany.saving import sidecar_path


def _labels(shape=(3, 40, 50), dtype=np.uint16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 300, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_tiff_round_trip_keeps_values_and_dtype(tmp_path, dtype):
    labels = _labels(dtype=dtype) % 250
    path = save_labels(labels, tmp_path / "out.tif", provenance={"model": "builtin"})
    again = tifffile.imread(path)
    assert again.dtype == labels.dtype
    np.testing.assert_array_equal(again, labels)
    assert json.loads(sidecar_path(path).read_text()) == {"model": "builtin"}
    assert sidecar_path(path).name == "out.segany.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.segany.json", "out.tif"]


def test_ome_zarr_labels_group_has_ngff_metadata_and_reads_back(tmp_path):
    labels = _labels(shape=(2, 3, 30, 20))
    store = tmp_path / "cells.ome.zarr"
    group_path = save_labels(labels, store, name="nuclei", provenance={"steps": []})
    assert group_path == store / "labels" / "nuclei"
    group = zarr.open_group(str(store), mode="r")
    assert group["labels"].attrs["labels"] == ["nuclei"]
    attrs = group["labels"]["nuclei"].attrs.asdict()
    axes = [a["name"] for a in attrs["multiscales"][0]["axes"]]
    assert axes == ["t", "z", "y", "x"] and attrs["multiscales"][0]["version"] == "0.4"
    assert "image-label" in attrs
    level = group["labels"]["nuclei"]["0"]
    assert level.dtype == np.uint32 and level.chunks == (1, 1, 30, 20)
    np.testing.assert_array_equal(load_labels(store, name="nuclei"), labels)
    assert json.loads((group_path / "segany.json").read_text()) == {"steps": []}


def test_a_second_save_replaces_the_group_and_keeps_the_others(tmp_path):
    store = tmp_path / "a.zarr"
    save_labels(np.ones((8, 8), np.uint8), store, name="first")
    save_labels(np.full((8, 8), 2, np.uint8), store, name="second")
    save_labels(np.full((8, 8), 3, np.uint8), store, name="first")
    assert zarr.open_group(str(store), mode="r")["labels"].attrs["labels"] == ["first", "second"]
    assert load_labels(store, name="first").max() == 3
    assert load_labels(store, name="second").max() == 2
    leftovers = [p.name for p in (store / "labels").iterdir() if p.name.startswith(".")]
    assert not [n for n in leftovers if "partial" in n or "old" in n]


def test_bad_labels_and_paths_write_nothing(tmp_path):
    with pytest.raises(InputError, match="integers"):
        save_labels(np.zeros((4, 4), np.float32), tmp_path / "f.tif")
    with pytest.raises(InputError, match="negative"):
        save_labels(-np.ones((4, 4), np.int32), tmp_path / "n.tif")
    with pytest.raises(InputError, match=".tif/.tiff"):
        save_labels(np.zeros((4, 4), np.uint8), tmp_path / "x.png")
    with pytest.raises(InputError, match="axes="):
        save_labels(np.zeros((2, 2, 2, 2, 4, 4), np.uint8), tmp_path / "x.tif")
    with pytest.raises(InputError, match="NGFF order"):
        save_labels(np.zeros((3, 4, 4), np.uint8), tmp_path / "x.zarr", axes="YXZ")
    with pytest.raises(InputError, match="does not exist"):
        save_labels(np.zeros((4, 4), np.uint8), tmp_path / "missing" / "x.tif")
    assert list(tmp_path.iterdir()) == []


def test_bool_masks_are_saved_as_0_1(tmp_path):
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:4] = True
    again = load_labels(save_labels(mask, tmp_path / "m.tiff"))
    assert again.dtype == np.uint8 and again.sum() == 4
