"""The generator of training/evaluation images: seeded, exact masks, visible objects."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import measure

from napari_segany.core.image import to_model_rgb
from napari_segany.core.synthetic import SCENE_KINDS, generate_scene
from napari_segany.core.synthetic.layout import Outline, draw_layout


def _scene(seed: int, **kwargs):
    return generate_scene(np.random.default_rng(seed), (128, 160), **kwargs)


def test_same_seed_same_scene_and_other_seed_other_scene():
    first, again, other = _scene(3), _scene(3), _scene(4)
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.labels, again.labels)
    assert not np.array_equal(first.labels, other.labels)


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_every_label_is_one_connected_object(kind):
    for seed in range(6):
        scene = _scene(seed, kind=kind)
        assert scene.labels.dtype == np.uint16 and scene.labels.shape == (128, 160)
        pieces = measure.label(scene.labels, background=0, connectivity=1)
        # equal-value connected regions: one per label means no label is split
        assert pieces.max() == len(np.unique(scene.labels)) - 1


@pytest.mark.parametrize(
    ("kind", "shape_tail"), [("nuclei", ()), ("cells", ()), ("cells_rgb", (3,))]
)
def test_image_shape_and_kind(kind, shape_tail):
    scene = _scene(1, kind=kind)
    assert scene.image.shape == (128, 160, *shape_tail)
    assert scene.kind == kind


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_requested_dtype_and_range(dtype):
    scene = _scene(2, dtype=dtype, kind="nuclei", coverage=0.3)
    assert scene.image.dtype == np.dtype(dtype)
    if dtype == "uint16":  # a camera range, not an 8-bit one
        assert scene.image.max() > 255


def test_objects_are_brighter_than_background_after_model_conversion():
    for seed in range(8):
        scene = _scene(seed, kind="nuclei", coverage=0.3, radius=8)
        gray = to_model_rgb(scene.image).mean(axis=-1)
        inside, outside = scene.labels > 0, scene.labels == 0
        assert gray[inside].mean() > gray[outside].mean() + 10


def test_radius_and_coverage_are_honoured():
    scene = generate_scene(
        np.random.default_rng(5), (256, 256), kind="nuclei", radius=10, coverage=0.25
    )
    covered = (scene.labels > 0).mean()
    assert 0.12 < covered < 0.3
    areas = np.bincount(scene.labels.ravel())[1:]
    areas = areas[areas > 0]
    typical_radius = np.sqrt(np.median(areas) / np.pi)
    assert 6 < typical_radius < 14


def test_dense_layouts_have_touching_objects():
    layout = draw_layout(np.random.default_rng(0), (200, 200), radius=9, coverage=0.45)
    labels = layout.labels
    touching = (labels[1:] != labels[:-1]) & (labels[1:] > 0) & (labels[:-1] > 0)
    assert touching.sum() > 20


def test_outline_rasterizes_an_ellipse_of_the_right_area():
    outline = Outline((50.0, 60.0), (10.0, 5.0), 0.3, np.zeros((0, 3)))
    window, mask = outline.rasterize((100, 120))
    assert abs(mask.sum() - np.pi * 10 * 5) < 0.05 * np.pi * 50
    full = np.zeros((100, 120), bool)
    full[window] = mask
    ys, xs = np.nonzero(full)
    assert abs(ys.mean() - 49.5) < 1 and abs(xs.mean() - 59.5) < 1


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        _scene(0, kind="brightfield")
