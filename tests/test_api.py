"""SegAny end to end on a tiny random-weight model: caching, errors, conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany.api import SegAny, SegmentResult
from napari_segany.core.errors import ImageError, NoImageError, PromptError
from napari_segany.core.model.build import build_sam
from tests.fakes import tiny_architecture

TINY = tiny_architecture(window_size=14)


def _tiny_sam():
    torch.manual_seed(0)
    return build_sam(TINY)


@pytest.fixture(scope="module")
def tiny_sam():
    return _tiny_sam()


@pytest.fixture
def session(tiny_sam) -> SegAny:
    return SegAny.from_model(tiny_sam, device="cpu", precision="fp32", name="tiny")


@pytest.fixture
def plane() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = rng.normal(1000, 50, (90, 140)).astype(np.uint16)
    image[20:60, 30:90] += 2000
    return image


class _CountingEmbed:
    def __init__(self, predictor):
        self.calls = 0
        self._embed = predictor.embed

    def __call__(self, rgb):
        self.calls += 1
        return self._embed(rgb)


def test_segment_returns_masks_at_plane_resolution(session, plane):
    session.set_image(plane)
    result = session.segment(points_yx=[[40, 60]], labels=[1])
    assert isinstance(result, SegmentResult)
    assert result.masks.shape == (3, 90, 140) and result.masks.dtype == bool
    assert result.scores.shape == (3,) and result.scores.dtype == np.float32
    assert result.logits.shape == (3, 256, 256) and result.logits.dtype == np.float32
    boxes = session.segment(box_yxyx=[[10, 10, 50, 50], [20, 30, 80, 120]], multimask=False)
    assert boxes.masks.shape == (2, 1, 90, 140) and boxes.scores.shape == (2, 1)
    assert session.current.hw == (90, 140)


def test_same_plane_is_embedded_once(session, plane, monkeypatch):
    counter = _CountingEmbed(session.predictor)
    monkeypatch.setattr(session.predictor, "embed", counter)
    first = session.set_image(plane)
    again = session.set_image(plane.copy())  # same content, other array
    assert counter.calls == 1 and again is first
    assert (session.cache.hits, session.cache.misses) == (1, 1)
    session.set_image(plane, contrast_limits=(900, 3200))  # other conversion -> new
    changed = plane.copy()
    changed[0, 0] += 1
    session.set_image(changed)  # one pixel differs -> new
    session.set_image(plane.astype(np.int32))  # same values, other dtype -> new
    assert counter.calls == 4 and len(session.cache) == 4
    session.set_image(plane, contrast_limits=(900, 3200))
    assert counter.calls == 4


def test_channel_selection_is_part_of_the_key(session, monkeypatch):
    counter = _CountingEmbed(session.predictor)
    monkeypatch.setattr(session.predictor, "embed", counter)
    five = np.random.default_rng(0).integers(0, 256, (40, 50, 5), dtype=np.uint8)
    session.set_image(five)
    session.set_image(five, channels=(4, 2, 0))
    session.set_image(five, channels=(4, 2, 0))
    assert counter.calls == 2


def test_segment_before_set_image_raises(session):
    with pytest.raises(NoImageError, match="set_image"):
        session.segment(points_yx=[[1, 1]], labels=[1])


@pytest.mark.parametrize(
    ("image", "options"),
    [
        (np.zeros(10), {}),
        (np.zeros((3, 4, 5, 6)), {}),
        (np.zeros((0, 5)), {}),
        (np.zeros((8, 8, 0)), {}),
        (np.zeros((8, 8)), {"contrast_limits": (5, 1)}),
        (np.zeros((8, 8, 2)), {"channels": (3,)}),
        (None, {}),  # no plane and no precomputed embedding
    ],
)
def test_bad_image_raises_and_keeps_the_current_plane(session, plane, image, options):
    session.set_image(plane)
    before = session.segment(points_yx=[[40, 60]], labels=[1])
    with pytest.raises(ImageError):
        session.set_image(image, **options)
    assert session.current.hw == (90, 140)
    after = session.segment(points_yx=[[40, 60]], labels=[1])
    np.testing.assert_array_equal(after.masks, before.masks)


def test_bad_prompt_raises_and_keeps_the_session_usable(session, plane):
    session.set_image(plane)
    before = session.segment(points_yx=[[40, 60]], labels=[1])
    with pytest.raises(PromptError, match="outside"):
        session.segment(points_yx=[[90, 60]], labels=[1])
    with pytest.raises(PromptError, match="labels"):
        session.segment(points_yx=[[40, 60]], labels=[3])
    after = session.segment(points_yx=[[40, 60]], labels=[1])
    # same result as before the errors (up to float noise of multi-threaded matmuls)
    np.testing.assert_allclose(after.scores, before.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(after.logits, before.logits, rtol=1e-4, atol=1e-4)
    assert np.mean(after.masks == before.masks) > 0.999


def test_refinement_with_previous_logits(session, plane):
    session.set_image(plane)
    first = session.segment(points_yx=[[40, 60]], labels=[1])
    best = first.logits[np.argmax(first.scores)]
    refined = session.segment(points_yx=[[40, 60], [5, 5]], labels=[1, 0], mask_input=best)
    assert refined.masks.shape == (3, 90, 140)


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(1).random((64, 80)).astype(np.float32),
        np.random.default_rng(1).integers(0, 256, (64, 80, 4), dtype=np.uint8),
        np.random.default_rng(1).random((64, 80)) > 0.5,
    ],
    ids=["float32", "rgba", "bool"],
)
def test_any_plane_dtype_segments(session, image):
    session.set_image(image)
    assert session.segment(box_yxyx=[5, 5, 50, 60]).masks.shape == (3, 64, 80)


def test_cache_budget_is_respected(tiny_sam):
    one = 32 * 64 * 64 * 4  # bytes of one tiny embedding
    session = SegAny.from_model(tiny_sam, device="cpu", precision="fp32", cache_bytes=2 * one)
    for value in range(3):
        session.set_image(np.full((20, 20), value, np.uint8))
    assert len(session.cache) == 2 and session.cache.nbytes == 2 * one


def test_constructor_loads_a_checkpoint_file(tmp_path, plane):
    path = tmp_path / "tiny.pt"
    torch.save(_tiny_sam().state_dict(), path)
    session = SegAny(str(path), device="cpu", precision="fp32")
    reference = SegAny.from_model(_tiny_sam(), device="cpu", precision="fp32")
    assert session.predictor.precision == "fp32" and session.predictor.device == torch.device("cpu")
    for each in (session, reference):
        each.set_image(plane)
    ours = session.segment(points_yx=[[40, 60]], labels=[1])
    expected = reference.segment(points_yx=[[40, 60]], labels=[1])
    np.testing.assert_allclose(ours.logits, expected.logits, atol=1e-5)
    assert "fp32" in repr(session)
