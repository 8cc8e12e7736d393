"""``training.evaluate_builtin --case``: the held-out scenes as other inputs."""

from __future__ import annotations

import numpy as np
import pytest
from training.input_cases import INPUT_CASES, TINY_HW, as_case

from napari_segany.core.synthetic import generate_scene


@pytest.fixture(scope="module")
def scene():
    return generate_scene(np.random.default_rng(1), (200, 240), kind="nuclei", radius=8.0)


def test_channel_cases_move_the_stain_and_keep_the_truth(scene):
    red, green = as_case(scene, "red", 0), as_case(scene, "green", 0)
    assert red.image.shape == (200, 240, 3) and red.image.dtype == scene.image.dtype
    np.testing.assert_array_equal(red.image[..., 0], scene.image)
    assert not red.image[..., 1:].any()
    np.testing.assert_array_equal(green.image[..., 1], scene.image)
    assert not green.image[..., [0, 2]].any()
    two = as_case(scene, "two_channel", 3)
    assert two.image.shape == (200, 240, 2)
    np.testing.assert_array_equal(two.image[..., 0], scene.image)
    assert two.image[..., 1].std() > 0 and not np.array_equal(two.image[..., 1], scene.image)
    for case in ("red", "green", "two_channel", "grey"):
        assert as_case(scene, case, 0).labels is scene.labels


def test_tiny_case_crops_around_an_object_and_rgb_scenes_stay(scene):
    tiny = as_case(scene, "tiny", 0)
    assert tiny.image.shape == tiny.labels.shape == TINY_HW
    assert tiny.labels[TINY_HW[0] // 2 - 3 : TINY_HW[0] // 2 + 4].any()  # an object mid-crop
    rgb = generate_scene(np.random.default_rng(2), (128, 128), kind="cells_rgb")
    for case in ("red", "green", "two_channel"):
        assert as_case(rgb, case, 0) is rgb
    with pytest.raises(ValueError, match="case"):
        as_case(scene, "blue", 0)
    assert INPUT_CASES[0] == "grey"
