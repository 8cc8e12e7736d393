"""``SegAny`` on a SAM 2.1 checkpoint file against Meta's ``SAM2ImagePredictor``.

A random-weight SAM 2.1 model saved as the official files are (``{"model": state}``),
loaded by path through the public API; planes of several shapes (the frame squeezes
them to 1024 x 1024), every prompt kind, the reference's masks, scores and returned
low-resolution logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany.api import SegAny
from napari_segany.core.errors import CheckpointError
from tests.oracle.sam2_upstream import reference_image_predictor, reference_sam2

# The reference scripts its transforms with torch.jit.script, which torch now deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    reference = reference_sam2("tiny", seed=21)
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": reference.state_dict()}, path)
    return reference, path


def _plane(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    plane = np.full((height, width, 3), 30, np.uint8)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, 40)
        plane[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.integers(120, 255, 3)
    return plane


def _compare(ours, theirs_masks, theirs_scores, theirs_logits) -> None:
    assert ours.masks.shape == theirs_masks.shape
    for got, want in zip(
        ours.masks.reshape(-1, *ours.masks.shape[-2:]),
        theirs_masks.reshape(-1, *theirs_masks.shape[-2:]),
    ):
        assert _iou(got, want) >= 0.98
    np.testing.assert_allclose(ours.scores, theirs_scores, atol=1e-3)
    scale = float(np.abs(theirs_logits).max())
    np.testing.assert_allclose(ours.logits, theirs_logits, atol=1e-3 * scale)


@pytest.mark.parametrize("plane_hw", [(300, 420), (1024, 1024), (700, 260)])
def test_segment_equals_the_reference_image_predictor(tiny_pair, plane_hw):
    reference, path = tiny_pair
    plane = _plane(*plane_hw, seed=sum(plane_hw))
    session = SegAny(path, device="cpu", precision="fp32")
    session.set_image(plane)
    predictor = reference_image_predictor(reference)
    with torch.inference_mode():
        predictor.set_image(plane)
    height, width = plane_hw
    points_yx = np.array([[0.4 * height, 0.3 * width], [0.7 * height, 0.6 * width]])
    box_yxyx = np.array([0.1 * height, 0.2 * width, 0.8 * height, 0.9 * width])
    boxes_yxyx = np.stack([box_yxyx, [0, 0, height / 2, width / 2]])
    cases = [
        ({"points_yx": points_yx[:1], "labels": [1]}, True),
        ({"points_yx": points_yx, "labels": [1, 0]}, False),
        ({"box_yxyx": box_yxyx}, False),
        ({"box_yxyx": boxes_yxyx}, False),
        ({"box_yxyx": box_yxyx, "points_yx": points_yx[:1], "labels": [0]}, True),
    ]
    for prompt, multimask in cases:
        ours = session.segment(**prompt, multimask=multimask)
        kwargs = {"multimask_output": multimask}
        if "points_yx" in prompt:
            kwargs["point_coords"] = prompt["points_yx"][:, ::-1].copy()
            kwargs["point_labels"] = np.asarray(prompt["labels"])
        if "box_yxyx" in prompt:
            kwargs["box"] = np.asarray(prompt["box_yxyx"])[..., [1, 0, 3, 2]]
        with torch.inference_mode():
            masks, scores, logits = predictor.predict(**kwargs)
        _compare(ours, masks, scores, logits)
    # refining with the returned logits, as an app feeds them back
    first = session.segment(points_yx=points_yx[:1], labels=[1], multimask=True)
    best = int(np.argmax(first.scores))
    ours = session.segment(
        points_yx=points_yx, labels=[1, 1], mask_input=first.logits[best][None], multimask=False
    )
    with torch.inference_mode():
        masks, scores, logits = predictor.predict(
            point_coords=points_yx[:, ::-1].copy(),
            point_labels=np.array([1, 1]),
            mask_input=first.logits[best][None],
            multimask_output=False,
        )
    _compare(ours, masks, scores, logits)


def test_the_file_is_recognised_and_its_memory_parts_kept(tiny_pair):
    _, path = tiny_pair
    session = SegAny(path, device="cpu")
    model = session.predictor.model
    assert session.predictor.name == path.stem
    assert "memory_attention.layers.0.self_attn.q_proj.weight" in model.memory_state
    assert "maskmem_tpos_enc" in model.memory_state


def test_a_sam20_file_and_a_sam1_file_named_sam21_are_refused(tiny_pair, tmp_path):
    reference, _ = tiny_pair
    state = {
        key: value
        for key, value in reference.state_dict().items()
        if key not in ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias")
    }
    old = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": state}, old)
    with pytest.raises(CheckpointError, match="SAM 2.0"):
        SegAny(old, device="cpu")
    from tests.oracle.upstream import random_upstream_sam

    sam1 = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save(random_upstream_sam("vit_t").state_dict(), sam1)
    with pytest.raises(CheckpointError, match="'vit_t'.*sam2.1_tiny"):
        SegAny("sam2.1_tiny", checkpoint=sam1, device="cpu")


def test_a_truncated_sam21_file_is_refused_by_name_and_path(tiny_pair, tmp_path):
    """A download cut short: as for SAM files, one clear error naming the file, by path
    and under its registry name."""
    _, path = tiny_pair
    data = path.read_bytes()
    half = tmp_path / "sam2.1_hiera_tiny.pt"
    half.write_bytes(data[: len(data) // 2])
    for source, checkpoint in ((half, None), ("sam2.1_tiny", half)):
        with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint") as info:
            SegAny(source, checkpoint=checkpoint, device="cpu")
        assert str(half) in str(info.value)


def _reference_generator(reference, **params):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    return SAM2AutomaticMaskGenerator(reference, **params)


@pytest.mark.parametrize("use_m2m", [False, True])
def test_everything_mode_agrees_with_the_reference_generator_point_by_point(tiny_pair, use_m2m):
    """Every grid point's three candidates (no filters): predicted IoU, stability and
    area as SAM2AutomaticMaskGenerator's, on a non-square plane (squeezed frame); also
    after its mask-to-mask refinement (each candidate decoded again with its own logits
    as the mask prompt)."""
    reference, path = tiny_pair
    plane = _plane(200, 260, seed=5)
    no_filters = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
    params = {"points_per_side": 5, "use_m2m": use_m2m, **no_filters}
    with torch.inference_mode():
        expected = _reference_generator(reference, **params).generate(plane)
    session = SegAny(path, device="cpu", precision="fp32")
    session.set_image(plane)
    ours = session.segment_everything(mode="grid", **params)
    by_point: dict = {}
    for record in expected:
        by_point.setdefault(tuple(np.round(record["point_coords"][0][::-1], 3)), []).append(record)
    mine: dict = {}
    for obj in ours.objects:
        mine.setdefault(tuple(np.round(obj.point_yx, 3)), []).append(obj)
    assert len(by_point) == 25 and set(mine) == set(by_point)
    for point, records in by_point.items():
        records = sorted(records, key=lambda r: r["predicted_iou"])
        objects = sorted(mine[point], key=lambda o: o.predicted_iou)
        assert len(objects) == len(records) == 3
        for record, obj in zip(records, objects):
            assert obj.predicted_iou == pytest.approx(record["predicted_iou"], abs=1e-4)
            assert obj.stability_score == pytest.approx(record["stability_score"], abs=2e-3)
            assert abs(obj.area - record["area"]) <= 2 + 0.002 * record["area"]


def test_everything_mode_uses_the_reference_generators_defaults(tiny_pair):
    import inspect

    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from napari_segany.core.everything.selection import FilterParams

    _, path = tiny_pair
    reference = inspect.signature(SAM2AutomaticMaskGenerator).parameters
    defaults = SegAny(path, device="cpu").everything.defaults
    for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
        given = defaults.get(name, getattr(FilterParams(), name))  # the session's value
        assert given == reference[name].default, name
