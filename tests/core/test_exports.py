"""Exports of label images: the per-object table, COCO RLE and COCO JSON.

Oracles: skimage's ``regionprops`` for the table, pycocotools (test extra) for the
RLE strings, areas and boxes, and small examples worked out by hand.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pycocotools.mask as coco_mask
import pytest
from pycocotools.coco import COCO
from skimage.measure import regionprops

from napari_segany.core.errors import InputError
from napari_segany.core.exports import (
    TABLE_COLUMNS,
    coco_annotations,
    decode_rle,
    encode_rle,
    object_table,
    write_coco,
    write_object_table,
)


def _random_labels(rng, shape, n_ids=12, dtype=np.uint16) -> np.ndarray:
    """Blocky random labels: ids on a coarse grid, upsampled, some cells background."""
    coarse = rng.integers(0, n_ids + 1, (*shape[:-2], shape[-2] // 4 + 1, shape[-1] // 4 + 1))
    fine = coarse.repeat(4, axis=-2).repeat(4, axis=-1)[..., : shape[-2], : shape[-1]]
    return fine.astype(dtype)


def _oracle_rows(labels: np.ndarray):
    """(id, slice, area, bbox, centroid) of every (plane, id) by skimage, in our order."""
    rows = []
    for index in np.ndindex(*labels.shape[:-2]):
        for r in regionprops(np.asarray(labels[index], np.int64)):
            rows.append((r.label, index, r.area, tuple(r.bbox), r.centroid))
    return rows


def _pycoco(mask: np.ndarray) -> dict:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


def test_a_hand_made_plane():
    labels = np.zeros((4, 5), np.uint8)
    labels[0, 1:3] = 2  # two pixels: centroid (0, 1.5)
    labels[1:4, 4] = 9  # a column of three: centroid (2, 4)
    labels[3, 0] = 9  # ... and a far pixel of the same id
    rows = list(object_table(labels))
    assert [r.id for r in rows] == [2, 9]
    assert rows[0] == (2, (), 2, (0, 1, 1, 3), (0.0, 1.5), None)
    assert rows[1].area == 4 and rows[1].bbox_yxyx == (1, 0, 4, 5)
    assert rows[1].centroid_yx == pytest.approx(((1 + 2 + 3 + 3) / 4, (4 * 3 + 0) / 4))


@pytest.mark.parametrize("dtype", [np.uint16, np.int64, np.uint32, np.uint64])
def test_the_table_matches_regionprops(dtype):
    labels = _random_labels(np.random.default_rng(1), (53, 61), dtype=dtype)
    table = object_table(labels)
    expected = _oracle_rows(labels)
    assert len(table) == len(expected) > 5
    for row, (label, index, area, bbox, centroid) in zip(table, expected):
        assert (row.id, row.slice, row.area, row.bbox_yxyx) == (label, index, area, bbox)
        assert row.centroid_yx == pytest.approx(centroid)
    assert table.ids.dtype == np.int64 and table.bbox_yxyx.shape == (len(table), 4)


def test_a_uint8_mask_of_0_and_255_and_a_bool_mask_are_one_object():
    mask = np.zeros((20, 30), np.uint8)
    mask[3:9, 4:20] = 255
    assert [(r.id, r.area, r.bbox_yxyx) for r in object_table(mask)] == [(255, 96, (3, 4, 9, 20))]
    assert [(r.id, r.area) for r in object_table(mask > 0)] == [(1, 96)]


@pytest.mark.parametrize("shape", [(3, 33, 29), (2, 3, 21, 17)])
def test_stacks_give_one_row_per_plane_and_id_with_its_slice(shape):
    labels = _random_labels(np.random.default_rng(2), shape, n_ids=5)
    labels[(0,) * (len(shape) - 2)] = 0  # an empty first plane
    table = object_table(labels)
    expected = _oracle_rows(labels)
    assert [(r.id, r.slice, r.area, r.bbox_yxyx) for r in table] == [e[:4] for e in expected]
    assert table.slices.shape == (len(table), len(shape) - 2)
    assert all(r.slice != (0,) * (len(shape) - 2) for r in table)


def test_scores_by_id_and_by_plane():
    labels = np.zeros((3, 8, 8), np.uint16)
    labels[:, 1:3, 1:3] = 4
    labels[1, 5:7, 5:7] = 6
    table = object_table(labels, scores={4: 0.5, (1, 4): 0.75, ((2,), 4): 0.25})
    assert [(r.slice, r.id, r.score) for r in table] == [
        ((0,), 4, 0.5),
        ((1,), 4, 0.75),
        ((1,), 6, None),
        ((2,), 4, 0.25),
    ]
    assert np.isnan(table.score[2])
    with pytest.raises(InputError, match="Score keys"):
        object_table(labels, scores={"four": 1.0})


def test_labels_that_are_not_ids_are_refused():
    with pytest.raises(InputError, match=r"integers .*astype\(np.uint32\)"):
        object_table(np.zeros((4, 4), np.float32))
    negative = np.zeros((2, 4, 4), np.int32)
    negative[1, 0, 0] = -3
    with pytest.raises(InputError, match=r"negative ids \(e.g. -3 in plane \(1,\)\)"):
        object_table(negative)
    with pytest.raises(InputError, match="at least 2 dimensions"):
        object_table(np.zeros(5, np.uint8))
    with pytest.raises(InputError, match="integers"):
        coco_annotations(np.zeros((4, 4)))


def test_empty_labels_give_an_empty_table():
    table = object_table(np.zeros((2, 6, 7), np.uint8))
    assert len(table) == 0 and table.slices.shape == (0, 1) and list(table) == []
    assert coco_annotations(np.zeros((6, 7), np.uint8))["annotations"] == []


def test_the_csv_holds_the_table_and_replaces_a_file_only_when_complete(tmp_path):
    labels = _random_labels(np.random.default_rng(3), (2, 3, 19, 23), n_ids=4)
    path = tmp_path / "objects.csv"
    table = write_object_table(labels, path, scores={1: 0.125})
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == TABLE_COLUMNS and len(rows) == len(table) + 1
    for line, row in zip(rows[1:], table):
        assert int(line[0]) == row.id and line[1] == ",".join(map(str, row.slice))
        assert [int(v) for v in line[2:7]] == [row.area, *row.bbox_yxyx]
        assert [float(v) for v in line[7:9]] == pytest.approx(row.centroid_yx, abs=1e-4)
        assert line[9] == ("0.125" if row.id == 1 else "")
    before = path.read_bytes()
    labels = labels.astype(np.int16)
    labels[1, 2, 0, 0] = -1
    with pytest.raises(InputError):
        write_object_table(labels, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects.csv"]


def test_rle_of_a_hand_checked_3x3_mask():
    # rows: 0 1 0 / 0 1 1 / 0 0 0; column-major: 000 110 010 -> runs 3, 2, 2, 1, 1.
    # From the 4th count on, store count - count two before: 1 - 2 = -1, 1 - 2 = -1.
    # One 5-bit group each; -1 is 0b11111 (31, sign bit 0x10 set): chr(48 + 31) = "O".
    mask = np.array([[0, 1, 0], [0, 1, 1], [0, 0, 0]], bool)
    assert encode_rle(mask) == {"size": [3, 3], "counts": "322OO"}
    assert np.array_equal(decode_rle({"size": [3, 3], "counts": "322OO"}), mask)


def test_rle_of_a_long_run_uses_several_groups():
    # 2 x 40 mask, all background but its last pixel: counts [79, 1].
    # 79 = 0b10_01111: low group 15 (and more follow: 15 + 32 + 48 = 95, "_"), then 2
    # ("2"); 2 has no sign bit and nothing is left, so it ends the value.
    mask = np.zeros((2, 40), bool)
    mask[1, 39] = True
    assert encode_rle(mask)["counts"] == "_21"
    assert _pycoco(mask)["counts"] == b"_21"


def test_rle_equals_pycocotools_and_round_trips():
    rng = np.random.default_rng(4)
    masks = [np.zeros((5, 7), bool), np.ones((5, 7), bool), np.ones((1, 1), bool)]
    masks += [rng.random(rng.integers(1, 50, 2)) < rng.random() for _ in range(60)]
    for _ in range(20):  # rectangles: long runs, negative deltas
        mask = np.zeros(rng.integers(1, 300, 2), bool)
        mask[rng.integers(0, mask.shape[0]) :, rng.integers(0, mask.shape[1]) :] = True
        masks.append(mask)
    for mask in masks:
        ours, reference = encode_rle(mask), _pycoco(mask)
        assert ours["counts"] == reference["counts"].decode("ascii")
        assert ours["size"] == list(reference["size"])
        assert np.array_equal(decode_rle(ours), mask)
        assert np.array_equal(decode_rle(reference), mask)  # bytes counts too


def test_decode_takes_uncompressed_counts_and_refuses_damage():
    mask = decode_rle({"size": [2, 3], "counts": [1, 2, 3]})
    assert np.array_equal(mask, [[False, True, False], [True, False, False]])
    with pytest.raises(InputError, match="add up to 5"):
        decode_rle({"size": [2, 3], "counts": [1, 4]})
    with pytest.raises(InputError, match="outside '0'..'o' or ends early"):
        decode_rle({"size": [2, 3], "counts": "3_"})
    with pytest.raises(InputError, match="'size'"):
        decode_rle({"counts": "3"})
    with pytest.raises(InputError, match="2D"):
        encode_rle(np.zeros((2, 2, 2), bool))


def test_coco_annotations_agree_with_pycocotools():
    labels = _random_labels(np.random.default_rng(5), (2, 37, 41), n_ids=6, dtype=np.uint32)
    dataset = coco_annotations(labels, scores={3: 0.9}, image_id=10, file_name="cells.tif")
    assert dataset["categories"] == [{"id": 1, "name": "object"}]
    assert dataset["images"] == [
        {"id": 10 + z, "width": 41, "height": 37, "file_name": "cells.tif", "slice": [z]}
        for z in range(2)
    ]
    table = object_table(labels)
    assert [a["id"] for a in dataset["annotations"]] == list(range(1, len(table) + 1))
    for annotation, row in zip(dataset["annotations"], table):
        mask = labels[row.slice] == row.id
        reference = _pycoco(mask)
        assert annotation["image_id"] == 10 + row.slice[0]
        assert annotation["label_id"] == row.id and annotation["category_id"] == 1
        assert annotation["segmentation"]["counts"] == reference["counts"].decode("ascii")
        assert annotation["area"] == coco_mask.area(reference) == row.area
        assert annotation["bbox"] == coco_mask.toBbox(reference).tolist()  # x, y, w, h
        assert annotation["iscrowd"] == 0
        assert annotation.get("score") == (0.9 if row.id == 3 else None)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_a_written_coco_file_loads_in_pycocotools(tmp_path):
    labels = _random_labels(np.random.default_rng(6), (31, 27), n_ids=5)
    path = tmp_path / "objects.json"
    written = write_coco(labels, path, category_name="cell")
    assert json.loads(path.read_text()) == written
    coco = COCO(str(path))
    assert coco.loadCats(1)[0]["name"] == "cell"
    for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[1])):
        assert np.array_equal(coco.annToMask(annotation), labels == annotation["label_id"])
