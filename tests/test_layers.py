"""napari layer <-> core conversion: planes, prompts and safe, undoable commits."""

import numpy as np
import pytest
from napari.layers import Image, Labels, Points

from napari_segany import _layers
from napari_segany.core.errors import InputError, LabelsDtypeError


def test_plane_index_follows_world_point_with_scale_and_translate():
    layer = Image(np.zeros((5, 32, 32)), scale=(2.0, 1, 1), translate=(10.0, 0, 0))
    # world z = 10 + 2 * index  ->  world 16 is plane 3
    assert _layers.plane_index(layer, (16.0, 3.0, 3.0)) == (3,)
    assert _layers.plane_index(layer, (100.0, 0, 0)) == (4,)  # clipped to the stack
    assert _layers.plane_index(Image(np.zeros((8, 8))), (1.0, 1.0)) == ()


def test_get_plane_of_rgb_stack_keeps_channels():
    data = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    layer = Image(data, rgb=True)
    np.testing.assert_array_equal(_layers.get_plane(layer, (1,)), data[1])


def test_points_on_plane_selects_slice_and_reads_polarity_feature():
    points = Points(
        np.array([[0, 5, 6], [1, 7, 8], [1, 2, 3]]),
        features={"positive": [True, True, False]},
    )
    yx, labels = _layers.points_on_plane(points, (1,))
    np.testing.assert_array_equal(yx, [[7, 8], [2, 3]])
    np.testing.assert_array_equal(labels, [1, 0])


def test_commit_writes_new_id_only_on_background_and_is_undoable():
    data = np.zeros((2, 6, 6), dtype=np.int32)
    data[1, 0:3, 0:3] = 4
    layer = Labels(data)
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    new_id = _layers.commit_mask(layer, (1,), mask)
    assert new_id == 5
    assert (layer.data[1, 0:3, 0:3] == 4).all()  # the user's label survives
    assert (layer.data[1, 3:5, 3:5] == 5).all()
    assert (layer.data[0] == 0).all()  # the other plane is untouched
    layer.undo()
    np.testing.assert_array_equal(layer.data, data)


def test_commit_with_overwrite_replaces_and_wrong_shape_changes_nothing():
    layer = Labels(np.full((4, 4), 2, dtype=np.int32))
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    assert _layers.commit_mask(layer, (), mask) == 0  # all covered: nothing written
    assert _layers.commit_mask(layer, (), mask, overwrite=True) == 3
    assert layer.data[0, 0] == 3
    before = layer.data.copy()
    with pytest.raises(InputError, match="does not fit"):
        _layers.commit_mask(layer, (), np.ones((3, 3), bool))
    np.testing.assert_array_equal(layer.data, before)


def test_boxes_on_plane_take_the_bounding_box_of_shapes_on_that_plane():
    from napari.layers import Shapes

    rectangle = np.array([[2, 5, 6], [2, 5, 16], [2, 9, 16], [2, 9, 6]])
    ellipse = np.array([[3, 0, 0], [3, 0, 4], [3, 4, 4], [3, 4, 0]])
    shapes = Shapes([rectangle, ellipse], shape_type=["rectangle", "ellipse"])
    np.testing.assert_allclose(_layers.boxes_on_plane(shapes, (2,)), [[5, 6, 9, 16]])
    assert _layers.boxes_on_plane(shapes, (0,)).shape == (0, 4)


def test_prompts_in_a_layer_with_another_scale_map_through_world_coordinates():
    image = Image(np.zeros((4, 20, 20)), scale=(2, 0.5, 0.5), translate=(1, 0, 0))
    points = Points(np.array([[1 + 2 * 3, 0.5 * 8, 0.5 * 12]]))  # world units, scale 1
    yx, labels = _layers.points_on_plane(points, (3,), image)
    np.testing.assert_allclose(yx, [[8, 12]])
    assert labels.tolist() == [1]


def test_several_objects_take_successive_ids_in_one_undo_step():
    layer = Labels(np.zeros((8, 8), dtype=np.int32))
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4] = True
    masks[1, 2:6] = True  # overlaps the first object on rows 2-3
    assert _layers.commit_masks(layer, (), masks) == [1, 2]
    assert (layer.data[2:4] == 1).all() and (layer.data[4:6] == 2).all()
    layer.undo()
    assert layer.data.max() == 0


def test_label_planes_go_over_the_base_or_replace_the_plane_in_one_undo_step():
    data = np.zeros((3, 4, 4), dtype=np.int32)
    data[0, 0, 0] = 9  # another plane's id
    data[1, 0, :] = 5  # the user's labels on plane 1
    layer = Labels(data)
    ids = np.zeros((4, 4), np.uint32)
    ids[0:2, 0:2] = 1
    ids[3, 3] = 2
    base = np.array(layer.data[1])
    written = _layers.write_label_planes(layer, {(1,): ids}, {(1,): base}, offset=9)
    assert layer.data[1, 0].tolist() == [5, 5, 5, 5]  # kept
    assert layer.data[1, 1, :2].tolist() == [10, 10] and layer.data[1, 3, 3] == 11
    np.testing.assert_array_equal(written[(1,)], layer.data[1])
    _layers.write_label_planes(layer, {(1,): ids}, {(1,): base}, offset=9, overwrite=True)
    assert layer.data[1, 0].tolist() == [10, 10, 5, 5]
    _layers.write_label_planes(layer, {(2,): ids, (1,): ids}, {(2,): None, (1,): None})
    assert layer.data[1, 0].tolist() == [1, 1, 0, 0] and layer.data[2, 3, 3] == 2
    layer.undo()  # both planes of the last write come back at once
    assert layer.data[1, 0].tolist() == [10, 10, 5, 5] and layer.data[2].max() == 0
    assert _layers.free_id_outside(layer, [(1,)]) == 9
    assert _layers.free_id_outside(layer, [(0,), (1,), (2,)]) == 0


def test_label_planes_that_do_not_fit_the_dtype_write_nothing():
    layer = Labels(np.zeros((4, 4), dtype=np.uint8))
    ids = np.full((4, 4), 3, np.uint32)
    with pytest.raises(InputError, match="new layer"):
        _layers.write_label_planes(layer, {(): ids}, {(): None}, offset=254)
    assert layer.data.max() == 0


def _mask_255(shape=(6, 6)) -> Labels:
    """A 0/255 binary mask opened as a uint8 Labels layer (rows 0-1 are 255)."""
    data = np.zeros(shape, np.uint8)
    data[..., :2, :] = 255
    return Labels(data, name="mask")


def test_commit_into_a_uint8_mask_holding_255_raises_before_writing_anything():
    layer = _mask_255()
    masks = np.zeros((2, 6, 6), bool)
    masks[0, 3], masks[1, 5] = True, True
    with pytest.raises(LabelsDtypeError, match=r"astype\(np.uint16\)") as caught:
        _layers.commit_masks(layer, (), masks)
    assert (caught.value.needed, caught.value.wider) == (257, np.dtype(np.uint16))
    assert layer.data.dtype == np.uint8 and np.unique(layer.data).tolist() == [0, 255]
    layer.undo()  # nothing was recorded either
    assert np.unique(layer.data).tolist() == [0, 255]


def test_an_object_without_free_pixels_needs_no_id():
    layer = _mask_255()
    layer.data[2:, :] = 254  # everything taken: 254 and 255
    masks = np.zeros((1, 6, 6), bool)
    masks[0, 3] = True
    assert _layers.commit_masks(layer, (), masks) == [0]  # no id, so no overflow


def test_widening_keeps_labels_and_the_undo_of_earlier_commits():
    data = np.zeros((2, 6, 6), np.uint8)
    data[1, :2] = 254
    layer = Labels(data, name="mask")
    first, second = np.zeros((2, 6, 6), bool)
    first[2, 0], second[3, 3] = True, True
    assert _layers.commit_mask(layer, (0,), first) == 255  # still fits uint8
    with pytest.raises(LabelsDtypeError):
        _layers.commit_mask(layer, (1,), second)
    _layers.widen_labels(layer, np.uint16)
    assert layer.data.dtype == np.uint16 and layer.data[0, 2, 0] == 255
    assert _layers.commit_mask(layer, (1,), second) == 256
    layer.undo()  # the commit after widening
    assert layer.data[1, 3, 3] == 0 and layer.data[0, 2, 0] == 255
    layer.undo()  # the commit before widening
    assert layer.data[0, 2, 0] == 0 and layer.data.dtype == np.uint16
    assert (layer.data[1, :2] == 254).all()  # the user's labels are untouched


def test_widening_to_a_dtype_that_cannot_hold_the_labels_changes_nothing():
    layer = Labels(np.full((3, 3), 300, np.uint16), name="big")
    with pytest.raises(InputError, match="cannot hold"):
        _layers.widen_labels(layer, np.uint8)
    assert layer.data.dtype == np.uint16 and layer.data.max() == 300


def test_label_planes_check_every_plane_before_writing_any():
    layer = Labels(np.zeros((2, 4, 4), np.int32))
    ids = np.ones((4, 4), np.uint32)
    with pytest.raises(InputError, match="does not fit"):
        _layers.write_label_planes(
            layer, {(0,): ids, (1,): np.ones((3, 3), np.uint32)}, {(0,): None, (1,): None}
        )
    assert layer.data.max() == 0  # plane 0 was not written before plane 1 failed


def test_plane_words_name_no_plane_for_2d_and_the_axes_when_named():
    assert _layers.plane_words(()) == ""
    assert _layers.plane_words((3,), ("-3", "-2", "-1")) == "plane 3"
    assert _layers.plane_words((3,), ("z", "y", "x")) == "plane z=3"
    assert _layers.plane_words((1, 3), ("t", "z", "y", "x")) == "plane t=1, z=3"
    assert _layers.plane_words((1, 3)) == "plane (1, 3)"
