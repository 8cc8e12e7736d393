"""Generated sample images: reproducible, 16-bit, with visible objects."""

import numpy as np

from napari_segany._sample_data import make_nuclei_2d, make_nuclei_3d, nuclei_2d


def test_samples_are_seeded_uint16_with_contrast():
    first, second = make_nuclei_2d(), make_nuclei_2d()
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.uint16 and first.shape == (256, 256)
    # nuclei are much brighter than the background
    assert np.percentile(first, 99) > 2 * np.percentile(first, 20)
    stack = make_nuclei_3d()
    assert stack.shape == (8, 192, 192)
    assert not np.array_equal(stack[0], stack[1])


def test_sample_hook_returns_layer_data_tuples():
    [(data, meta, kind)] = nuclei_2d()
    assert kind == "image" and "generated" in meta["name"] and data.ndim == 2
