"""Label images: painting order, free ids, renumbering and linking across planes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.core.errors import InputError, LabelsDtypeError
from napari_segany.core.labels import (
    check_label_room,
    link_labels,
    next_free_id,
    paint_masks,
    relabel,
    renumber_plane,
    wider_dtype,
)


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_small_objects_are_painted_over_large_ones_whatever_the_input_order():
    big = np.zeros((40, 40), bool)
    big[5:35, 5:35] = True
    small = _disc((40, 40), (20, 20), 4)
    for windows in ([(0, 0, big), (0, 0, small)], [(0, 0, small), (0, 0, big)]):
        areas = [w[2].sum() for w in windows]
        labels, label_of = paint_masks((40, 40), windows, areas)
        small_label = label_of[[i for i, w in enumerate(windows) if w[2] is small][0]]
        big_label = label_of[[i for i, w in enumerate(windows) if w[2] is big][0]]
        assert np.all(labels[small] == small_label)
        assert np.all(labels[big & ~small] == big_label)
        assert big_label == 1 and small_label == 2  # ids by decreasing area


def test_windows_are_placed_at_their_offsets_and_dtype_is_unsigned():
    patch = np.ones((3, 4), bool)
    labels, _ = paint_masks((10, 12), [(2, 5, patch)], [12])
    assert labels.dtype == np.uint32
    assert set(zip(*np.nonzero(labels))) == {(y, x) for y in range(2, 5) for x in range(5, 9)}


def test_next_free_id_and_relabel():
    labels = np.array([[0, 3], [7, 3]], np.uint32)
    assert next_free_id(labels) == 8
    assert next_free_id(np.zeros((2, 2), np.uint16)) == 1
    out = relabel(labels, {3: 10, 7: 2})
    assert out.tolist() == [[0, 10], [2, 10]] and out.dtype == np.uint32


def test_renumber_plane_gives_unused_ids_and_respects_links():
    plane = np.array([[1, 1, 0], [2, 0, 3]], np.uint32)
    out, mapping = renumber_plane(plane, first_id=50, linked={2: 7})
    assert mapping == {1: 50, 2: 7, 3: 51}
    assert out.tolist() == [[50, 50, 0], [7, 0, 51]]
    with pytest.raises(InputError, match="wider dtype"):
        renumber_plane(np.array([[1]], np.uint8), first_id=255)


def test_link_labels_matches_by_overlap_one_to_one():
    previous = np.zeros((30, 30), np.uint32)
    previous[_disc((30, 30), (8, 8), 5)] = 4
    previous[_disc((30, 30), (20, 20), 5)] = 9
    current = np.zeros_like(previous)
    current[_disc((30, 30), (9, 8), 5)] = 1  # moved by one pixel: same object as 4
    current[_disc((30, 30), (20, 22), 5)] = 2  # moved by two: still 9
    current[_disc((30, 30), (8, 25), 3)] = 3  # new object
    assert link_labels(previous, current, min_iou=0.5) == {1: 4, 2: 9}
    assert link_labels(previous, current, min_iou=0.9) == {}
    with pytest.raises(InputError):
        link_labels(previous, current[:10])


def test_wider_dtype_keeps_the_kind_and_takes_the_smallest_that_holds_the_id():
    assert wider_dtype(np.uint8, 256) == np.uint16
    assert wider_dtype(np.uint8, 70_000) == np.uint32
    assert wider_dtype(np.int8, 128) == np.int16
    assert wider_dtype(np.int32, 5) == np.int32  # never narrower than the layer
    assert wider_dtype(np.uint64, 2**64) is None


def test_check_label_room_names_the_layer_and_the_line_that_widens_it():
    check_label_room(np.uint8, 255, "mask")  # fits: no error
    with pytest.raises(LabelsDtypeError, match=r"'mask' stores uint8 ids up to 255") as caught:
        check_label_room(np.uint8, 256, "mask")
    assert "astype(np.uint16)" in str(caught.value) and caught.value.wider == np.uint16
    with pytest.raises(LabelsDtypeError, match="pick 'new layer'") as caught:
        check_label_room(np.uint64, 2**64, "huge")
    assert caught.value.wider is None
