"""Prompt rules (core/prompts.py): border boxes accepted everywhere, short error messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.measure import label, regionprops
from tests.fakes import tiny_architecture

from napari_segany import _layers
from napari_segany.core.errors import PromptError, describe_values
from napari_segany.core.model.build import build_sam
from napari_segany.core.predictor import Predictor
from napari_segany.core.prompts import boxes_inside, check_boxes, points_inside

HW = (120, 200)
MAX_MESSAGE = 600  # characters: a message names the problem, it does not list the input


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(build_sam(tiny_architecture(window_size=14)), "cpu", "fp32", "tiny")


@pytest.fixture(scope="module")
def embedding(predictor):
    rgb = np.random.default_rng(0).integers(0, 256, (*HW, 3), dtype=np.uint8)
    return predictor.embed(rgb)


@pytest.mark.parametrize(
    ("box", "inside"),
    [
        ((0, 0, 120, 200), True),  # the whole plane, end-exclusive
        ((119, 199, 120, 200), True),  # the last pixel
        ((120, 200, 120, 200), True),  # a degenerate box on the far corner
        ((0, 0, 120.01, 200), False),
        ((0, 0, 120, 200.5), False),
        ((-0.01, 0, 50, 50), False),
        ((0, -1, 50, 50), False),
    ],
)
def test_box_edges_may_lie_on_the_border_but_not_beyond(box, inside):
    assert boxes_inside(np.array([box]), HW).tolist() == [inside]


@pytest.mark.parametrize(
    ("point", "inside"),
    [((0, 0), True), ((119.99, 199.99), True), ((120, 5), False), ((5, 200), False)]
    + [((-0.01, 5), False)],
)
def test_a_point_must_fall_on_a_pixel(point, inside):
    assert points_inside(np.array([point]), HW).tolist() == [inside]


def test_whole_plane_box_reaches_the_decoder_unclipped(predictor, embedding):
    """(0, 0, H, W) is the model frame's full extent, not refused and not shrunk."""
    result = predictor.predict(embedding, box_yxyx=[0, 0, 120, 200], multimask=False)
    input_h, input_w = embedding.input_hw
    box_xyxy = torch.tensor([[0.0, 0.0, float(input_w), float(input_h)]])
    with torch.inference_mode():
        logits, _ = predictor.model.decode(embedding.features, None, None, box_xyxy, None, False)
    np.testing.assert_allclose(result.logits, logits[0].numpy(), rtol=1e-5, atol=1e-5)


def test_box_beyond_the_border_names_the_rule(predictor, embedding):
    with pytest.raises(PromptError, match=r"0 <= y <= 120 and 0 <= x <= 200"):
        predictor.predict(embedding, box_yxyx=[0, 0, 121, 200])


def test_widget_clips_drawn_boxes_to_boxes_the_predictor_accepts():
    points = np.array([[119.5, 3.0], [120.0, 3.0]])
    drawn = np.array([[-4.0, -2.5, 130.0, 260.0], [10.0, 10.0, 40.0, 50.0]])
    kept_points, kept_labels, boxes = _layers.clip_prompts(points, np.array([1, 0]), drawn, HW)
    np.testing.assert_array_equal(boxes, [[0, 0, 120, 200], [10, 10, 40, 50]])
    np.testing.assert_array_equal(kept_points, [[119.5, 3.0]])
    assert kept_labels.tolist() == [1]
    checked, batched = check_boxes(boxes, HW)
    np.testing.assert_array_equal(checked, boxes)


def _corner_disc_plane() -> tuple[np.ndarray, np.ndarray]:
    """(256, 256) uint8 plane with a bright disc cut by the bottom-right corner, and its mask."""
    rows, cols = np.mgrid[:256, :256]
    disc = (rows - 245) ** 2 + (cols - 240) ** 2 <= 24**2
    noise = np.random.default_rng(1).normal(0, 6, disc.shape)
    plane = np.clip(30 + 170 * disc + noise, 0, 255).astype(np.uint8)
    return plane, disc


def test_regionprops_bbox_on_the_border_segments_the_object():
    from napari_segany.api import SegAny

    plane, disc = _corner_disc_plane()
    bbox = regionprops(label(disc))[0].bbox
    assert bbox[2:] == (256, 256)  # end-exclusive: the box ends on the border
    session = SegAny("builtin", device="cpu", precision="fp32")
    session.set_image(plane)
    result = session.segment(box_yxyx=bbox, multimask=False)
    mask = result.masks[0]
    iou = (mask & disc).sum() / (mask | disc).sum()
    assert iou > 0.85


BIG = 10_000


@pytest.mark.parametrize(
    ("prompts", "named"),
    [
        ({"points_yx": np.full((BIG, 2), 500.0), "labels": np.ones(BIG)}, "10000 point"),
        ({"points_yx": np.full((BIG, 2), np.nan), "labels": np.ones(BIG)}, "NaN"),
        ({"points_yx": np.full((BIG, 2), "a"), "labels": np.ones(BIG)}, "numeric"),
        ({"points_yx": np.ones((BIG, 2)), "labels": np.full(BIG, 3)}, "10000 are not"),
        ({"box_yxyx": np.tile([50.0, 60, 10, 20], (BIG, 1))}, "y0 <= y1"),
        ({"box_yxyx": np.tile([0.0, 0, 130, 20], (BIG, 1))}, "10000 box"),
        (
            {"points_yx": [[5, 5]], "labels": [1], "mask_input": np.full((256, 256), np.nan)},
            "NaN or infinite values \\(65536 of 65536\\)",
        ),
    ],
)
def test_error_messages_stay_short_and_name_the_problem(predictor, embedding, prompts, named):
    with pytest.raises(PromptError, match=named) as caught:
        predictor.predict(embedding, **prompts)
    assert len(str(caught.value)) < MAX_MESSAGE


def test_describe_values_lists_the_first_entries_and_the_count():
    text = describe_values(np.arange(20_000).reshape(10_000, 2))
    assert text == "[[0, 1], [2, 3], [4, 5], [6, 7], ... (10000 in all)]"
    assert describe_values([1.5, 2.5]) == "[1.5, 2.5]"
    assert len(describe_values("x" * 5000)) <= 80


def test_the_documented_border_box_example_runs():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "scripting.md").read_text()
    block = re.search(r"<!-- test: boxes-on-the-border -->\n```python\n(.*?)```", doc, re.S)
    assert block, "the tested example is missing from docs/scripting.md"
    namespace: dict = {}
    exec(compile(block.group(1), "scripting.md", "exec"), namespace)
    assert namespace["whole"].masks.shape == (1, 256, 256)  # (0, 0, H, W) was refused before


def test_plane_coordinates_go_to_the_model_frame_as_x_y_pairs():
    from napari_segany.core.prompts import to_model_frame

    points = to_model_frame(np.array([[10.0, 40.0], [0.0, 0.0]]), (512, 1024), (100, 200))
    np.testing.assert_allclose(points, [[40 * 5.12, 10 * 5.12], [0, 0]])
    box = to_model_frame(np.array([1.0, 2.0, 3.0, 4.0]), (1024, 1024), (256, 512))
    np.testing.assert_allclose(box, [4.0, 4.0, 8.0, 12.0])  # (x0, y0, x1, y1)
