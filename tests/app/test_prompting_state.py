"""The Qt-free prompting state: requests, candidates, commit rules (no Qt, no viewer)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_segany.app import prompting
from napari_segany.app.prompting import PromptState, Request, Step
from napari_segany.app.sessions import PromptSession
from napari_segany.core.errors import LabelsDtypeError
from napari_segany.core.results import SegmentResult


class SquareSession(PromptSession):
    """A PromptSession whose candidates are squares of half-size 2, 4, 6 around the
    first point (scores 0.5, 0.9, 0.7); preparing a plane records it."""

    def __init__(self, sizes=(2, 4, 6)) -> None:
        self.sizes = sizes
        self.prepared: list[float] = []
        self.hw = (0, 0)

    predictor = None  # the app reads channels only in the widget

    def prepare(self, image, contrast_limits=None, channels=None, *, run=True, region_yxyx=None):
        if not run:
            ready = float(np.sum(image)) in self.prepared
            return np.asarray(image).shape[:2] if ready else None
        self.prepared.append(float(np.sum(image)))
        return np.asarray(image).shape[:2]

    def set_image(self, image, contrast_limits=None, channels=None, *, embedding=None):
        self.hw = embedding if embedding is not None else self.prepare(image)
        return self.hw

    def segment(
        self, points_yx=None, labels=None, box_yxyx=None, mask_input=None, multimask=True
    ) -> SegmentResult:
        cy, cx = np.asarray(points_yx, dtype=int)[0]
        masks = np.zeros((len(self.sizes), *self.hw), bool)
        for k, size in enumerate(self.sizes):
            if size > 0:
                masks[k, max(cy - size, 0) : cy + size + 1, max(cx - size, 0) : cx + size + 1] = (
                    True
                )
        scores = np.array([0.5, 0.9, 0.7], np.float32)
        return SegmentResult(masks, scores, np.zeros((3, 8, 8), np.float32))

    def without_embedding(self):
        return contextlib.nullcontext()

    def fork(self):
        return self


def _request(image, points=((10, 10),), index=(), plane=None) -> Request:
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    plane = np.zeros((30, 30), np.uint8) if plane is None else plane
    labels = np.ones(len(points), np.int64)
    return Request(image, index, plane, (0.0, 255.0), points, labels, np.empty((0, 4)))


@pytest.fixture
def viewer():
    return ViewerModel()


def test_the_fake_implements_the_protocol():
    assert isinstance(SquareSession(), PromptSession)


def test_signature_changes_with_prompts_plane_image_and_contrast(viewer):
    image = viewer.add_image(np.zeros((30, 30), np.uint8))
    other = viewer.add_image(np.zeros((30, 30), np.uint8))
    base = _request(image)
    assert _request(image).signature == base.signature
    assert _request(image, points=((10, 11),)).signature != base.signature
    assert _request(image, index=(1,)).signature != base.signature
    assert _request(other).signature != base.signature
    darker = Request(image, (), base.plane, (0.0, 100.0), base.points_yx, base.labels, base.boxes)
    assert darker.signature != base.signature


def test_step_says_when_to_predict_prepare_or_clear(viewer):
    image = viewer.add_image(np.zeros((30, 30), np.uint8))
    state, session = PromptState(), SquareSession()
    request = _request(image)
    assert state.step(request, prepared=False) is Step.PREPARE
    state.wait_for_plane(request)
    assert state.plane_prepared(request.key) is request and not state.waiting
    state.preview = prompting.predict(session, request, (30, 30))
    assert state.step(_request(image), prepared=True) is Step.NOTHING  # same prompts
    assert state.step(_request(image, points=((5, 5),)), prepared=True) is Step.PREDICT
    assert state.step(_request(image, points=()), prepared=True) is Step.CLEAR
    assert state.step(_request(image, points=(), index=(2,)), prepared=True) is Step.NOTHING


def test_candidates_cycle_and_skip_empty_ones(viewer):
    image = viewer.add_image(np.zeros((30, 30), np.uint8))
    preview = prompting.predict(SquareSession(sizes=(2, 4, -1)), _request(image), (30, 30))
    assert preview.single and preview.describe() == "candidate 2/3 · score 0.90"
    assert preview.masks().shape == (1, 30, 30) and preview.masks().sum() == 81
    preview.next_candidate()  # the third candidate is empty: skipped
    assert preview.describe() == "candidate 1/3 · score 0.50" and preview.masks().sum() == 25
    preview.next_candidate()
    assert preview.shown() == 1


def test_commit_writes_only_background_unless_overwrite(viewer):
    image = viewer.add_image(np.zeros((30, 30), np.uint8))
    labels = viewer.add_labels(np.zeros((30, 30), np.int32))
    labels.data[8:13, 8:13] = 7
    preview = prompting.predict(SquareSession(), _request(image), (30, 30))
    done = prompting.commit(preview, labels, overwrite=False)
    assert done.ids == [8] and "committed object 8" in done.message
    assert (labels.data[8:13, 8:13] == 7).all() and labels.data[6, 6] == 8
    done = prompting.commit(preview, labels, overwrite=True)
    assert done.ids == [9] and labels.data[10, 10] == 9
    covered = prompting.predict(SquareSession(sizes=(1, 1, 1)), _request(image), (30, 30))
    assert prompting.commit(covered, labels, overwrite=False).ids == [0]


def test_commit_into_a_0_255_mask_asks_and_writes_nothing_without_consent(viewer):
    image = viewer.add_image(np.zeros((30, 30), np.uint8))
    mask = viewer.add_labels(np.zeros((30, 30), np.uint8), name="mask")
    mask.data[:5] = 255
    preview = prompting.predict(SquareSession(), _request(image), (30, 30))
    with pytest.raises(LabelsDtypeError, match="id 256 is needed; nothing was written"):
        prompting.commit(preview, mask, overwrite=False)  # a script: no consent asked
    with pytest.raises(LabelsDtypeError):
        prompting.commit(preview, mask, overwrite=False, consent=lambda error: False)
    assert mask.data.dtype == np.uint8 and np.unique(mask.data).tolist() == [0, 255]
    done = prompting.commit(preview, mask, overwrite=False, consent=lambda error: True)
    assert done.ids == [256] and mask.data.dtype == np.uint16
    assert mask.data[10, 10] == 256 and (mask.data[:5] == 255).all()


def test_commit_message_names_the_plane_only_for_stacks(viewer):
    flat = viewer.add_image(np.zeros((30, 30), np.uint8))
    labels = viewer.add_labels(np.zeros((30, 30), np.int32))
    done = prompting.commit(
        prompting.predict(SquareSession(), _request(flat), (30, 30)), labels, False
    )
    assert "plane" not in done.message and "into 'Labels'" in done.message
    stack = viewer.add_image(np.zeros((4, 30, 30), np.uint8), axis_labels=("z", "y", "x"))
    labels3 = viewer.add_labels(np.zeros((4, 30, 30), np.int32), name="stack labels")
    request = _request(stack, index=(3,))
    done = prompting.commit(prompting.predict(SquareSession(), request, (30, 30)), labels3, False)
    assert done.message.endswith(
        "into 'stack labels' on plane z=3 (Ctrl-Z or Undo commit takes it back)"
    )
    assert labels3.data[3, 10, 10] == 1 and labels3.data[:3].max() == 0


def test_a_pending_commit_is_dropped_with_the_waiting_requests(viewer):
    image = viewer.add_image(np.zeros((30, 30), np.uint8))
    state = PromptState(commit_pending=True)
    state.wait_for_plane(_request(image))
    state.drop_waiting()
    assert not state.waiting and not state.commit_pending
    assert "was deleted" in prompting.deleted_image_message(_request(image))


def test_prepare_planes_prepares_each_plane_once(viewer):
    stack = np.stack([np.full((8, 8), z, np.uint8) for z in range(3)])
    image = viewer.add_image(stack)
    session = SquareSession()
    steps = prompting.prepare_planes(session, image)
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        assert stop.value == (3, 3)
    assert session.prepared == [0.0, 64.0, 128.0]
