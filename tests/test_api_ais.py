"""Everything mode ``"ais"``: a session whose model has an instance decoder (a tiny
SAM with a random micro-sam decoder) offers it, picks it for ``"auto"``, and reruns
only the watershed when its parameters change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany.api import SegAny
from napari_segany.core.errors import InputError
from napari_segany.core.everything.ais import AisParams, ais_labels, decoder_maps
from napari_segany.core.model.build import build_sam
from napari_segany.core.model.instance_decoder import InstanceDecoder
from tests.fakes import tiny_architecture
from tests.oracle.upstream import randomize_


@pytest.fixture
def session():
    torch.manual_seed(0)
    sam = build_sam(tiny_architecture(), image_size=256)
    decoder = randomize_(InstanceDecoder(embed_dim=32, features=8), seed=4, scale=0.2)
    sam.instance_decoder = decoder
    calls = []
    forward = decoder.forward
    decoder.forward = lambda x: calls.append(1) or forward(x)
    sa = SegAny.from_model(sam, name="tiny-with-decoder")
    sa.decoder_calls = calls
    return sa


def _plane() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (90, 120), dtype=np.uint8)


def test_auto_picks_ais_and_its_objects_are_the_watersheds(session):
    assert list(session.everything.names())[0] == "ais"
    session.set_image(_plane())
    params = {"foreground_threshold": 0.45, "center_distance_threshold": 0.6}
    result = session.segment_everything(**params)  # micro-sam's: keep every object
    maps = decoder_maps(session.current)
    expected = ais_labels(*maps, AisParams(**params))
    assert expected.max() > 3  # random weights still make objects
    assert len(result.objects) == expected.max()
    for record in result.objects:  # every object is one of the watershed's
        mask = result.labels == record.label
        assert len(np.unique(expected[mask])) == 1 and expected[mask][0] > 0
    assert session.decoder_calls == [1, 1]  # the run and decoder_maps above


def test_other_parameters_rerun_only_the_watershed(session):
    session.set_image(_plane())
    first = session.segment_everything(mode="ais")
    second = session.segment_everything(mode="ais", center_distance_threshold=0.3, min_size=20)
    assert session.decoder_calls == [1]
    assert len(second.objects) != len(first.objects)


def test_models_without_a_decoder_offer_no_ais():
    sa = SegAny.from_model(build_sam(tiny_architecture(), image_size=256), name="tiny")
    assert "ais" not in sa.everything.names()
    sa.set_image(_plane())
    with pytest.raises(InputError, match="ais"):
        sa.segment_everything(mode="ais")


def test_bf16_sessions_run_the_decoder_in_bf16_close_to_fp32(session):
    session.set_image(_plane())
    fp32 = np.stack(decoder_maps(session.current))
    session.predictor.precision = "bf16"  # the same embedding, the decoder in bf16
    bf16 = np.stack(decoder_maps(session.current))
    assert bf16.dtype == np.float32
    difference = np.abs(bf16 - fp32)
    assert difference.max() > 0 and difference.mean() < 0.01  # bf16 ran, and stays close


def test_a_stack_runs_ais_per_slice_and_links_through_z(session):
    plane = _plane()
    stack = np.stack([plane, plane, plane])  # the same slice thrice: every object links
    result = session.segment_everything_stack(stack, mode="ais", link=True)
    session.set_image(plane)
    single = session.segment_everything(mode="ais")
    assert result.labels.shape == stack.shape and len(single.objects) > 3
    ids = [set(np.unique(result.labels[z])) - {0} for z in range(3)]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == len(single.objects)
    np.testing.assert_array_equal(result.labels[1] > 0, single.labels > 0)


def test_apg_is_offered_beside_ais_and_reruns_only_what_changed(session, monkeypatch):
    import napari_segany.core.everything.apg as apg

    assert set(session.everything.names()) == {"ais", "apg", "grid"}
    assert "nms_threshold" in session.everything.parameters("apg")
    decoded = []
    original = apg.decode_prompts
    monkeypatch.setattr(
        apg, "decode_prompts", lambda *a, **k: decoded.append(1) or (yield from original(*a, **k))
    )
    session.set_image(_plane())
    session.segment_everything(mode="ais")
    first = session.segment_everything(mode="apg", min_size=0)
    assert session.decoder_calls == [1] and decoded == [1]  # the maps were AIS's
    looser = session.segment_everything(mode="apg", min_size=0, nms_threshold=0.2)
    assert decoded == [1] and len(looser.objects) != len(first.objects)  # NMS only
    session.segment_everything(mode="apg", min_size=0, center_distance_threshold=0.3)
    assert decoded == [1, 1] and session.decoder_calls == [1]  # prompts again, not maps
    for record in first.objects:  # QC: the painted mask's scores, never invented
        assert 0 <= record.stability_score <= 1 and np.isfinite(record.predicted_iou)


def test_apg_asks_for_a_decoder_by_name():
    sa = SegAny.from_model(build_sam(tiny_architecture(), image_size=256), name="tiny")
    sa.set_image(_plane())
    with pytest.raises(InputError, match=r"Unknown everything mode 'apg'.*'grid'"):
        sa.segment_everything(mode="apg")
