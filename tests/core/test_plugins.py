"""The plug-in boundary: a model's refiners and proposers reach the general session
only through ``core.plugins`` (a plug-in defined here, not in the package)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from tests.fakes import tiny_architecture

from napari_segany.api import SegAny
from napari_segany.core.errors import InputError
from napari_segany.core.everything.candidates import GridCandidates
from napari_segany.core.mask_runs import MaskRuns
from napari_segany.core.model.build import build_sam
from napari_segany.core.plugins import NO_PLUGIN, ModelPlugin, choose_refiners, load_plugin
from napari_segany.core.progress import Progress


class _Halves:
    """A refiner that keeps the upper half of every mask; its per-plane state is the
    plane's mean (prepared once per plane, embedding a view to prove it may)."""

    name = "halves"

    def __init__(self) -> None:
        self.prepared, self.refined = 0, 0

    def prepare(self, plane):
        self.prepared += 1
        plane.views.embed(np.ascontiguousarray(plane.rgb[::-1]))  # a view, kept
        return float(plane.rgb.mean())

    def refine(self, result, prompt, plane):
        self.refined += 1
        assert plane.prepared[self.name] == pytest.approx(float(plane.rgb.mean()))
        masks = result.masks.copy()
        masks[..., masks.shape[-2] // 2 :, :] = False
        return result.with_masks(masks)


@dataclass(frozen=True)
class _SquareParams:
    side: int = 8


class _Squares:
    """A proposer: one square candidate in the plane's top-left corner."""

    name = "squares"
    description = "a square in the corner"
    params_type = _SquareParams

    def propose(self, plane, params):
        yield Progress(0, 1, "squares")
        height, width = plane.hw
        side = params.side
        result = GridCandidates((height, width), params)
        edges = np.array([r * width + c for r in range(side) for c in (0, side)], np.int32)
        result.crops_xyxy = [(0, 0, width, height)]
        result.crop_index = np.zeros(1, np.int64)
        result.predicted_iou = np.ones(1, np.float32)
        result.stability_score = np.ones(1, np.float32)
        result.area = np.array([side * side])
        result.boxes_xyxy = np.array([[0, 0, side - 1, side - 1]])
        result.points_xy = np.array([[side / 2, side / 2]])
        result.near_crop_edge = np.zeros(1, bool)
        result.runs = [MaskRuns(edges, np.array([0, edges.size], np.int64), (height, width))]
        result.local_index = np.zeros(1, np.int64)
        yield Progress(1, 1, "squares")
        return result


@pytest.fixture
def plugged():
    torch.manual_seed(0)
    halves = _Halves()
    plugin = ModelPlugin(
        refiners=(halves,),
        proposers=(_Squares(),),
        default_mode="squares",
        everything_defaults={"pred_iou_thresh": 0.0},
    )
    sam = build_sam(tiny_architecture(), image_size=256)
    return SegAny.from_model(sam, name="plugged", plugin=plugin), halves


def test_a_plugins_refiner_is_prepared_once_per_plane_and_refines_every_prompt(plugged):
    session, halves = plugged
    plane = np.random.default_rng(0).integers(0, 255, (64, 48), dtype=np.uint8)
    assert session.prepare(plane, run=False) is None
    session.set_image(plane)
    assert session.prepare(plane, run=False) is not None and halves.prepared == 1
    embedded = []
    embed = session.predictor.embed
    session.predictor.embed = lambda rgb: embedded.append(rgb.shape) or embed(rgb)
    for _ in range(3):
        result = session.segment(points_yx=[[10, 10]], labels=[1])
        assert not result.masks[:, 32:].any()  # the refiner's rule
    assert halves.prepared == 1 and halves.refined == 3 and embedded == []
    session.refiners = "none"  # the decoder's own masks
    raw = session.segment(points_yx=[[10, 10]], labels=[1])
    assert halves.refined == 3
    np.testing.assert_array_equal(raw.masks[:, :32], result.masks[:, :32])
    np.testing.assert_array_equal(raw.scores, result.scores)


def test_a_plugins_proposer_is_a_mode_with_its_own_parameters(plugged):
    session, _ = plugged
    assert list(session.everything.names()) == ["squares", "grid"]
    assert session.everything.parameters() == {"side"}
    session.set_image(np.zeros((40, 50), np.uint8))
    labels = session.segment_everything(side=5).labels
    assert labels.sum() == 25 and labels[:5, :5].all()
    # the grid's parameters are accepted and not used by another mode; unknown ones fail
    assert session.segment_everything(points_per_side=2).labels.sum() == 64
    with pytest.raises(InputError, match="Unknown everything-mode parameter"):
        session.segment_everything(sides=5)
    with pytest.raises(InputError, match="Unknown everything mode 'circles'"):
        session.segment_everything(mode="circles")


def test_refiner_choices_and_plugin_specs_are_checked():
    plugin = ModelPlugin(refiners=(_Halves(),))
    assert [r.name for r in choose_refiners(plugin, "auto")] == ["halves"]
    assert choose_refiners(plugin, "none") == ()
    with pytest.raises(InputError, match="has \\['halves'\\]"):
        choose_refiners(plugin, ["halve"], "m")
    with pytest.raises(InputError, match="refine must be one of"):
        choose_refiners(plugin, "all", "m")
    assert load_plugin("") is NO_PLUGIN
    assert load_plugin("napari_segany.core.plugins:NO_PLUGIN") is NO_PLUGIN
    with pytest.raises(InputError, match="cannot be loaded"):
        load_plugin("napari_segany.no_such_module:PLUGIN")
    with pytest.raises(InputError, match="not a ModelPlugin"):
        load_plugin("napari_segany.core.plugins:REFINE_CHOICES")
