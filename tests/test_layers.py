"""napari layer <-> core conversion: planes, prompts and safe, undoable commits."""

import numpy as np
import pytest
from napari.layers import Image, Labels, Points

from napari_segany import _layers
from napari_segany.core.errors import InputError


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
