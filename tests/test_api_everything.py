"""``SegAny.segment_everything`` / ``segment_everything_stack`` on a tiny random model."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from napari_segany.api import SegAny
from napari_segany.core.errors import NoImageError
from napari_segany.core.everything.grid import segment_everything
from napari_segany.core.image import to_model_rgb
from napari_segany.core.model.build import build_sam
from napari_segany.core.refiners import ClickedParts
from tests.fakes import tiny_architecture

TINY = tiny_architecture(window_size=4)
LOOSE = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


class _Calls:
    """Counts calls of ``model.encode`` and ``model.decode`` (instance-level wrappers)."""

    def __init__(self, model) -> None:
        self.encode = self.decode = 0
        encode, decode = model.encode, model.decode

        def counted_encode(*args, **kwargs):
            self.encode += 1
            return encode(*args, **kwargs)

        def counted_decode(*args, **kwargs):
            self.decode += 1
            return decode(*args, **kwargs)

        model.encode, model.decode = counted_encode, counted_decode


@pytest.fixture
def session():
    torch.manual_seed(0)
    sam = build_sam(TINY, image_size=256)
    return SegAny.from_model(sam, device="cpu", precision="fp32", name="tiny")


def _plane(seed=0, shape=(60, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.normal(500, 30, shape).astype(np.uint16)
    image[10:35, 15:50] += 2500
    image[40:55, 55:75] += 1200
    return image


def test_threshold_changes_reselect_without_the_model(session):
    with pytest.raises(NoImageError, match="set_image"):
        session.segment_everything()
    calls = _Calls(session.predictor.model)
    plane = _plane()
    session.set_image(plane)
    loose = session.segment_everything(**LOOSE)
    decoded = calls.decode
    assert decoded > 0 and calls.encode == 1
    median_iou = float(np.median([o.predicted_iou for o in loose.objects]))
    strict_params = dict(LOOSE, pred_iou_thresh=median_iou, box_nms_thresh=0.9)
    start = time.perf_counter()
    strict = session.segment_everything(**strict_params)
    assert time.perf_counter() - start < 1.0
    assert (calls.encode, calls.decode) == (1, decoded)  # no model call
    assert 0 < len(strict.objects) < len(loose.objects)
    fresh = segment_everything(session.predictor, to_model_rgb(plane), **strict_params)
    np.testing.assert_array_equal(strict.labels, fresh.labels)  # same as decoding anew
    decoded = calls.decode
    session.set_image(plane)  # same plane: cached embedding, cached grid
    session.segment_everything(**LOOSE)
    assert (calls.encode, calls.decode) == (2, decoded)  # only `fresh` used the model
    session.segment_everything(**dict(LOOSE, points_per_side=3))  # grid changed: decode
    assert calls.decode > decoded
    decoded = calls.decode
    session.set_image(_plane(seed=1) + 100)  # another plane: decode again
    session.segment_everything(**dict(LOOSE, points_per_side=3))
    assert calls.decode > decoded


def test_progress_and_a_precomputed_embedding(session):
    plane = _plane()
    reports = []
    session.set_image(plane)
    expected = session.segment_everything(on_progress=reports.append, **LOOSE)
    assert reports and reports[-1].fraction == 1.0
    assert [r.done for r in reports] == sorted(r.done for r in reports)
    other = SegAny.from_model(session.predictor.model, name="tiny")
    other.set_image(None, embedding=session.current.embedding)
    np.testing.assert_array_equal(other.segment_everything(**LOOSE).labels, expected.labels)
    with pytest.raises(NoImageError, match="set_image"):
        other.segment_everything(crop_n_layers=1, **LOOSE)


def test_stack_ids_unique_linked_cached_and_cancellable(session):
    plane = _plane()
    stack = np.stack([plane, plane, np.roll(plane, 25, axis=1), plane])  # Z, Y, X
    calls = _Calls(session.predictor.model)
    separate = session.segment_everything_stack(stack, **LOOSE)
    assert separate.labels.shape == stack.shape and separate.labels.dtype == np.uint32
    assert calls.encode == 2  # planes 0, 1 and 3 are equal: embedded once
    ids = [set(np.unique(p)) - {0} for p in separate.labels]
    assert all(ids) and all(not (ids[i] & ids[j]) for i in range(4) for j in range(i))
    assert len({o.label for o in separate.objects}) == len(separate.objects)  # unique ids
    assert {o.label for o in separate.objects if o.visible_area} == set().union(*ids)
    assert {o.plane for o in separate.objects} == {(0,), (1,), (2,), (3,)}
    linked = session.segment_everything_stack(stack, link=True, **LOOSE)
    assert calls.encode == 2  # all embeddings cached
    np.testing.assert_array_equal(linked.labels[0], linked.labels[1])  # one id through z
    assert len(np.unique(linked.labels)) < len(np.unique(separate.labels))

    class Cancel(Exception):
        pass

    def stop_after_first_plane(report):
        if report.message.startswith("plane (1,)"):
            raise Cancel

    fresh = SegAny.from_model(session.predictor.model, name="tiny-2")
    calls.encode = 0
    with pytest.raises(Cancel):
        fresh.segment_everything_stack(stack * 2, on_progress=stop_after_first_plane, **LOOSE)
    assert calls.encode == 1  # planes 0 and 1 (equal) embedded; stopped before plane 2


def test_everything_defaults_fill_in_what_a_call_does_not_give(session):
    # a model without registry defaults runs SAM's (none set, the clicked-part rule off)
    assert session.everything.defaults == {}
    assert session.everything.merged() == {"clicked_component_only": False}
    session.set_image(_plane())
    session.everything.defaults = {**LOOSE, "points_per_side": 3}
    session.segment_everything()
    assert len(session._everything[2]) == 3 * 9  # the default grid: 3 x 3 points
    session.segment_everything(points_per_side=2)  # a call's own value wins
    assert len(session._everything[2]) == 3 * 4
    assert session._everything[2].params.clicked_component_only is False
    session.refiners = [ClickedParts()]  # the clicked-part rule reaches everything mode
    assert session.everything.merged() == {
        **LOOSE,
        "points_per_side": 3,
        "clicked_component_only": True,
    }
    session.segment_everything(points_per_side=2)
    assert session._everything[2].params.clicked_component_only is True
