"""``Volume`` on a SAM 2.1 model against Meta's ``SAM2VideoPredictor``.

Random weights (the reference's, copied into ours), frames of 512 x 512 to keep the
test short (the memory parts do not depend on the frame size), the same normalised
pixels given to both. Two objects, one clicked and one boxed, on different slices;
propagation forward then backward; a correction on a tracked slice, propagated
again from there; an object anchored with a mask.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany.api import SegAny
from napari_segany.core.errors import CheckpointError
from napari_segany.core.image import preprocess_square
from napari_segany.core.model.fpn_neck import build_sam2_image_encoder
from napari_segany.core.model.sam2 import Sam2, build_sam2, split_image_state
from napari_segany.core.model.sam2_video import video_parts
from tests.oracle.sam2_upstream import reference_video_predictor, reference_video_state

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

FRAME = 512
SLICES, HEIGHT, WIDTH = 6, 200, 240


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _stack() -> np.ndarray:
    """Two discs drifting down through the slices, RGB uint8."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    stack = np.full((SLICES, HEIGHT, WIDTH, 3), 30, np.uint8)
    for index in range(SLICES):
        for colour, (cy, cx, radius) in enumerate([(80, 90, 30), (140, 170, 25)]):
            disc = (yy - cy - 3 * index) ** 2 + (xx - cx) ** 2 < radius**2
            stack[index][disc] = (200, 120 + 40 * colour, 90)
    return stack


@pytest.fixture()
def pair(monkeypatch):
    """(our volume, the reference predictor, its inference state)."""
    reference = reference_video_predictor("tiny", seed=41, image_size=FRAME)
    image_state, memory_state = split_image_state(reference.state_dict())
    model = Sam2(build_sam2_image_encoder("tiny"), image_size=FRAME)
    model.load_state_dict(image_state, strict=True)
    model.memory_state = {key: value.float() for key, value in memory_state.items()}
    session = SegAny.from_model(model, name="sam2.1-tiny-random")
    stack = _stack()
    volume = session.open_volume(stack)
    mean, std = model.pixel_mean.flatten().tolist(), model.pixel_std.flatten().tolist()
    frames = torch.cat(
        [
            preprocess_square(session.predictor.rgb(plane), FRAME, "cpu", mean, std)
            for plane in stack
        ]
    )
    state = reference_video_state(reference, frames, HEIGHT, WIDTH, monkeypatch)
    return volume, reference, state


def _propagate_reference(reference, state, start=None) -> dict[int, np.ndarray]:
    """Forward then backward from ``start`` (default: the first prompted frame), as the
    predictor's users do: {frame: (objects, H, W) bool}, the backward pass last."""
    masks = {}
    with torch.inference_mode():
        for reverse in (False, True):
            for frame, _, logits in reference.propagate_in_video(
                state, start_frame_idx=start, reverse=reverse
            ):
                masks[frame] = (logits[:, 0] > 0).numpy()
    return masks


def _assert_equal_masks(ours: list[np.ndarray], theirs: list[np.ndarray]) -> None:
    ious = [_iou(a, b) for a, b in zip(ours, theirs)]
    assert np.mean(ious) >= 0.98 and min(ious) >= 0.95, ious
    areas = [int(mask.sum()) for mask in theirs]
    assert all(0 < area < HEIGHT * WIDTH for area in areas), areas  # not vacuous


def test_prompts_propagation_and_a_correction_equal_the_video_predictor(pair):
    volume, reference, state = pair
    assert volume.propagates_by == "memory"
    with torch.inference_mode():
        _, _, clicked = reference.add_new_points_or_box(state, 1, 1, points=[[90, 80]], labels=[1])
        _, _, boxed = reference.add_new_points_or_box(state, 3, 2, box=[140, 110, 200, 170])
    ours_clicked = volume.prompt(1, 1, points_yx=[[80, 90]], labels=[1])
    ours_boxed = volume.prompt(2, 3, box_yxyx=[110, 140, 170, 200])
    _assert_equal_masks(
        [ours_clicked.masks[0], ours_boxed.masks[0]],
        [clicked[0, 0].numpy() > 0, boxed[1, 0].numpy() > 0],
    )

    theirs = _propagate_reference(reference, state)
    labels = volume.propagate()
    assert labels.shape == (SLICES, HEIGHT, WIDTH) and labels.dtype == np.uint32
    for obj in (1, 2):
        _assert_equal_masks(
            [volume.object_mask(obj, index) for index in range(SLICES)],
            [theirs[index][obj - 1] for index in range(SLICES)],
        )

    # A negative click on a tracked slice: the slice becomes a prompted one and the
    # object is propagated again from it, both ways; the other object is not touched.
    boxed_before = [volume.object_mask(2, index) for index in range(SLICES)]
    tracked_there = volume.object_mask(1, 4)
    with torch.inference_mode():
        _, _, corrected = reference.add_new_points_or_box(
            state, 4, 1, points=[[60, 100]], labels=[0]
        )
    ours_corrected = volume.prompt(1, 4, points_yx=[[100, 60]], labels=[0])
    _assert_equal_masks([ours_corrected.masks[0]], [corrected[0, 0].numpy() > 0])
    assert _iou(ours_corrected.masks[0], tracked_there) < 0.95  # the click changed it
    theirs = _propagate_reference(reference, state, start=4)
    volume.propagate()
    _assert_equal_masks(
        [volume.object_mask(1, index) for index in range(SLICES)],
        [theirs[index][0] for index in range(SLICES)],
    )
    for index in range(SLICES):
        np.testing.assert_array_equal(volume.object_mask(2, index), boxed_before[index])


def test_an_object_anchored_with_a_mask_equals_add_new_mask(pair):
    volume, reference, state = pair
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    disc = (yy - 86) ** 2 + (xx - 90) ** 2 < 30**2
    with torch.inference_mode():
        reference.add_new_mask(state, 2, 7, disc)
    volume.add_mask(7, 2, disc)
    theirs = _propagate_reference(reference, state)
    volume.propagate()
    np.testing.assert_array_equal(volume.object_mask(7, 2), disc)  # the user's mask kept
    others = [index for index in range(SLICES) if index != 2]
    _assert_equal_masks(
        [volume.object_mask(7, index) for index in others],
        [theirs[index][0] for index in others],
    )


def test_max_slices_equals_max_frame_num_to_track_and_stays_due(pair):
    volume, reference, state = pair
    with torch.inference_mode():
        reference.add_new_points_or_box(state, 2, 1, points=[[90, 80]], labels=[1])
        theirs = {}
        for reverse in (False, True):
            for frame, _, logits in reference.propagate_in_video(
                state, max_frame_num_to_track=1, reverse=reverse
            ):
                theirs[frame] = (logits[0, 0] > 0).numpy()
    volume.prompt(1, 2, points_yx=[[80, 90]], labels=[1])
    limited = volume.propagate(max_slices=1)
    assert sorted(theirs) == [1, 2, 3]
    assert np.flatnonzero((limited == 1).any((1, 2))).tolist() == [1, 2, 3]
    _assert_equal_masks([volume.object_mask(1, i) for i in (1, 3)], [theirs[1], theirs[3]])
    assert (volume.propagate() == 1).any((1, 2)).all()  # cut short: walked again, whole


def test_cancel_keeps_the_tracked_slices_and_the_next_run_walks_again(pair):
    volume = pair[0]
    volume.prompt(1, 2, points_yx=[[80, 90]], labels=[1])
    steps = volume.propagation()
    for report in steps:
        if report.message == "slice 3":
            break
    steps.close()  # cancelled after slices 2 and 3
    assert np.flatnonzero((volume.labels == 1).any((1, 2))).tolist() == [2, 3]
    assert (volume.propagate() == 1).any((1, 2)).all()


def test_models_without_memory_parts_propagate_by_projection():
    model = build_sam2("tiny")  # an image-only model: no memory entries
    assert video_parts(model) is None
    session = SegAny.from_model(model, name="sam2.1-tiny-image-only")
    volume = session.open_volume(np.zeros((3, 40, 50), np.uint8))
    assert volume.propagates_by == "projection"


def test_memory_entries_that_are_not_sam21s_are_refused():
    reference = reference_video_predictor("tiny", seed=3)
    model = build_sam2("tiny")
    _, memory_state = split_image_state(reference.state_dict())
    memory_state["maskmem_tpos_enc"] = torch.zeros(5, 1, 1, 64)  # a 5-frame memory
    memory_state.pop("no_obj_ptr")
    model.memory_state = memory_state
    with pytest.raises(CheckpointError, match="maskmem_tpos_enc, no_obj_ptr"):
        video_parts(model)


def test_the_objects_of_a_walk_share_each_slice_read(pair, monkeypatch):
    volume = pair[0]
    volume.prompt(1, 1, points_yx=[[80, 90]], labels=[1])
    volume.prompt(2, 3, box_yxyx=[110, 140, 170, 200])
    reads = []
    plane = volume.plane
    monkeypatch.setattr(volume, "plane", lambda index: reads.append(index) or plane(index))
    volume.propagate()
    # two prompted slices' memories, then slices 1-5 forward and 1-0 backward: once
    # each, not once per object
    assert sorted(reads) == sorted([1, 3, 1, 2, 3, 4, 5, 1, 0])
