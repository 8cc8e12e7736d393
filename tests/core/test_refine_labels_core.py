"""core.refine_labels with a fake decoder: acceptance rules and the write-back."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_segany.core.errors import InputError
from napari_segany.core.label_inputs import check_labels
from napari_segany.core.mask_prompts import MaskFrame
from napari_segany.core.refine_labels import RefineRules, object_prompts, refine_label_plane
from napari_segany.core.results import SegmentResult

FRAME = MaskFrame((64, 64), (256, 256), 256, (64, 64))  # mask cells = plane pixels


def _two_discs(dtype=np.uint16) -> np.ndarray:
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), dtype)
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 < 81] = 7
    labels[(yy - 20) ** 2 + (xx - 34) ** 2 < 36] = 9  # touches 7
    return labels


def _decoder(answer_of, score: float = 0.9):
    """A decode that answers each object with ``answer_of(input mask)``."""

    def decode(points_yx, boxes_yxyx, mask_input):
        masks = np.stack([answer_of(given) for given in mask_input[:, 0] > 0])
        return SegmentResult(masks[:, None], np.full((len(masks), 1), score, np.float32),
                             mask_input)  # fmt: skip

    return decode


def test_grown_answer_takes_background_only_never_other_ids():
    labels = _two_discs()
    before = labels.copy()
    grow = _decoder(lambda m: ndimage.binary_dilation(m, iterations=5))
    result = refine_label_plane(labels, [7], grow, FRAME, RefineRules(agree_px=0.5))
    assert np.array_equal(labels, before)  # input untouched
    assert result.labels.dtype == labels.dtype
    assert np.array_equal(result.labels == 9, before == 9)  # the neighbour is intact
    gained = (result.labels == 7) & (before != 7)
    assert gained.any() and not before[gained].any()  # only background was taken
    assert [o.reason for o in result.outcomes] == ["refined"]


@pytest.mark.parametrize(
    ("answer", "score", "reason"),
    [
        (lambda m: np.zeros_like(m), 0.9, "empty"),
        (lambda m: ndimage.binary_dilation(m, iterations=3), 0.2, "low_score"),
        (lambda m: np.roll(m, 30, axis=1), 0.9, "low_iou"),  # another place: a neighbour
        (lambda m: m, 0.9, "agrees"),
    ],
)
def test_refused_answers_keep_the_pixels(answer, score, reason):
    labels = _two_discs()
    result = refine_label_plane(labels, None, _decoder(answer, score), FRAME)
    assert np.array_equal(result.labels, labels)
    assert {o.reason for o in result.outcomes} == {reason}
    assert not any(o.accepted for o in result.outcomes)


def test_lost_pixels_become_background_or_new_ids_with_split():
    labels = _two_discs()
    merged = labels.copy()
    merged[merged == 9] = 7  # two touching discs under one id
    keep_left = _decoder(lambda m: m & (np.arange(64) < 29)[None, :])
    plain = refine_label_plane(merged, None, keep_left, FRAME)
    assert set(np.unique(plain.labels)) == {0, 7}
    split = refine_label_plane(merged, None, keep_left, FRAME, split=True)
    (outcome,) = split.outcomes
    assert outcome.new_ids == (8,) and (split.labels == 8).sum() > 50


def test_large_and_negative_ids_keep_their_values():
    labels = _two_discs(np.int64)
    labels[labels == 7] = -3
    labels[labels == 9] = 10**12
    prompts = object_prompts(labels, [-3, 10**12], RefineRules())
    assert prompts[0].point_yx == (20.0, 20.0) and prompts[1].point_yx == (20.0, 34.0)
    grow = _decoder(lambda m: ndimage.binary_dilation(m, iterations=2))
    result = refine_label_plane(labels, None, grow, FRAME)
    assert set(np.unique(result.labels)) == {-3, 0, 10**12}


def test_box_is_grown_and_clipped():
    labels = _two_discs()
    (prompt,) = object_prompts(labels, [7], RefineRules(box_margin=0.5, min_margin_px=1))
    assert prompt.box_yxyx == (3.5, 3.5, 37.5, 37.5)  # 17 px box grown by 8.5 a side
    (edge,) = object_prompts(labels, [7], RefineRules(box_margin=3.0))
    assert edge.box_yxyx == (0.0, 0.0, 64.0, 64.0)


def test_bad_labels_are_refused():
    with pytest.raises(InputError, match="integer ids"):
        check_labels(np.zeros((64, 64), np.float32), (64, 64))
    with pytest.raises(InputError, match=r"\(64, 63\)"):
        check_labels(np.zeros((64, 63), np.uint8), (64, 64))
    with pytest.raises(InputError, match="not objects"):
        refine_label_plane(_two_discs(), [8], _decoder(lambda m: m), FRAME)
