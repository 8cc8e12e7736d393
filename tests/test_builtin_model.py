"""The shipped built-in model: loads offline by default and finds the clicked object.

These tests use the real weights in ``src/napari_segany/models/builtin.pt`` on
generated images whose true masks are known (seeds the training never used). The
floors are below the issue's targets, which this model does not reach (see
docs/models.md, "Metrics"): they check that the mask is on the prompted object and
guard the measured quality (each floor sits below the figure measured with the shipped
file, noted beside it).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany import SegAny
from napari_segany._sample_data import nuclei_scene_2d
from napari_segany.core.synthetic import generate_scene, interior_point_yx


@pytest.fixture(scope="module")
def builtin() -> SegAny:
    return SegAny(device="cpu", precision="fp32")  # no model argument: the built-in one


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def _on_object(mask: np.ndarray, labels: np.ndarray, label: int) -> bool:
    """Most of the predicted pixels that fall on objects fall on object ``label``."""
    hit = labels[mask & (labels > 0)]
    return hit.size > 0 and np.bincount(hit).argmax() == label


def test_default_session_is_the_builtin_model_on_its_512_frame(builtin):
    assert builtin.model_name == "builtin"
    assert builtin.predictor.model.image_size == 512


def test_a_click_finds_the_clicked_nucleus(builtin):
    scene = nuclei_scene_2d()
    builtin.set_image(scene.image)
    ids, areas = np.unique(scene.labels[scene.labels > 0], return_counts=True)
    ious, right = [], []
    for label in ids[areas >= 40][:12]:
        truth = scene.labels == label
        click_yx = interior_point_yx(truth, edge_is_background=False)
        result = builtin.segment(points_yx=[click_yx], labels=[1])
        best = result.masks[int(np.argmax(result.scores))]
        ious.append(_iou(best, truth))
        right.append(_on_object(best, scene.labels, label))
    assert np.mean(right) >= 0.9, right  # measured 0.92 (11 of 12)
    assert np.mean(ious) >= 0.6, ious  # measured 0.78 (clicked part only; 0.73 whole)


def test_a_box_finds_the_boxed_nucleus_on_another_size_and_dtype(builtin):
    scene = generate_scene(
        np.random.default_rng(31_337), (300, 420), kind="nuclei", radius=12, dtype="uint8"
    )
    builtin.set_image(scene.image)
    ids = np.unique(scene.labels[scene.labels > 0])[:10]
    boxes = []
    for label in ids:
        ys, xs = np.nonzero(scene.labels == label)
        boxes.append([ys.min(), xs.min(), ys.max(), xs.max()])
    result = builtin.segment(box_yxyx=boxes, multimask=False)
    ious = [_iou(result.masks[i, 0], scene.labels == label) for i, label in enumerate(ids)]
    assert np.mean(ious) >= 0.55, ious  # measured 0.69 (cut to the box; 0.66 without)


def test_box_masks_of_the_builtin_model_are_cut_to_the_box(builtin):
    """On by default for the built-in model only: the cut masks are the model's masks
    inside the box, the scores stay the model's, and the masks fit the objects better
    (the model's masks leak into touching neighbours past the box)."""
    from napari_segany.core import registry

    assert builtin.clip_to_box
    path = registry.packaged_checkpoint(registry.REGISTRY["builtin"])
    assert not SegAny(str(path), device="cpu", precision="fp32").clip_to_box  # a file: off
    assert not SegAny(device="cpu", precision="fp32", clip_to_box=False).clip_to_box
    scene = nuclei_scene_2d(seed=2)
    builtin.set_image(scene.image)
    ids = np.unique(scene.labels[scene.labels > 0])[:12]
    boxes = np.array([_box(scene.labels == label) for label in ids])
    cut = builtin.segment(box_yxyx=boxes, multimask=False)
    try:
        builtin.clip_to_box = False
        whole = builtin.segment(box_yxyx=boxes, multimask=False)
    finally:
        builtin.clip_to_box = True
    np.testing.assert_array_equal(cut.scores, whole.scores)
    inside = np.zeros_like(whole.masks)
    for index, (y0, x0, y1, x1) in enumerate(boxes):
        inside[index, :, y0 : y1 + 1, x0 : x1 + 1] = True
    np.testing.assert_array_equal(cut.masks, whole.masks & inside)
    assert (whole.masks & ~inside).any()  # the model's masks do leak past their box
    truth = [scene.labels == label for label in ids]
    cut_iou = np.mean([_iou(m[0], t) for m, t in zip(cut.masks, truth)])
    whole_iou = np.mean([_iou(m[0], t) for m, t in zip(whole.masks, truth)])
    assert cut_iou > whole_iou + 0.05, (cut_iou, whole_iou)  # measured 0.86 vs 0.72


def test_click_masks_of_the_builtin_model_keep_only_the_clicked_part(builtin):
    """On by default for the built-in model only: each candidate keeps its connected
    parts under the click, the scores stay the model's, the masks fit better."""
    from scipy import ndimage

    assert builtin.clicked_component_only
    assert not SegAny(
        device="cpu", precision="fp32", clicked_component_only=False
    ).clicked_component_only
    scene = nuclei_scene_2d(seed=3)
    builtin.set_image(scene.image)
    ids, areas = np.unique(scene.labels[scene.labels > 0], return_counts=True)
    kept_ious, whole_ious, dropped = [], [], 0
    for label in ids[areas >= 40][:12]:
        truth = scene.labels == label
        y, x = interior_point_yx(truth, edge_is_background=False)
        kept = builtin.segment(points_yx=[[y, x]], labels=[1])
        try:
            builtin.clicked_component_only = False
            whole = builtin.segment(points_yx=[[y, x]], labels=[1])
        finally:
            builtin.clicked_component_only = True
        np.testing.assert_array_equal(kept.scores, whole.scores)
        for cut, full in zip(kept.masks, whole.masks):
            regions, _ = ndimage.label(full, structure=np.ones((3, 3)))
            part = (
                regions == regions[int(round(y)), int(round(x))]
                if full[int(round(y)), int(round(x))]
                else full
            )
            np.testing.assert_array_equal(cut, part)
            dropped += int(full.sum() - cut.sum())
        best = int(np.argmax(kept.scores))
        kept_ious.append(_iou(kept.masks[best], truth))
        whole_ious.append(_iou(whole.masks[best], truth))
    assert dropped > 0  # the model's masks do have parts away from the clicked one
    # measured 0.79 vs 0.74
    assert np.mean(kept_ious) >= np.mean(whole_ious) + 0.02, (kept_ious, whole_ious)


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [ys.min(), xs.min(), ys.max(), xs.max()]


def test_everything_mode_warns_at_sams_thresholds_and_finds_nuclei_below_them(builtin):
    scene = nuclei_scene_2d(seed=1)
    builtin.set_image(scene.image)
    # the model's predicted IoUs stay below SAM's 0.88: the empty result says what to lower
    with pytest.warns(UserWarning, match="Lower pred_iou_thresh"):
        assert builtin.segment_everything().labels.max() == 0
    found = builtin.segment_everything(pred_iou_thresh=0.5, stability_score_thresh=0.8).labels
    matched = 0
    for label in np.unique(scene.labels[scene.labels > 0]):
        truth = scene.labels == label
        overlap = found[truth]
        best = np.bincount(overlap[overlap > 0]).argmax() if (overlap > 0).any() else 0
        matched += bool(best) and _iou(found == best, truth) > 0.5
    assert matched >= 12  # measured 20 of 65 nuclei (F1 0.26, 89 objects kept)
