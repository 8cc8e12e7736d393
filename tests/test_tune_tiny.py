"""The tiny-plane experiments of issue 19: tiny training planes, the decoder-only tune,
the crop diagnosis and the window the ``tiny`` case crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training import train_builtin, tune_tiny
from training.data import WindowSet
from training.input_cases import tiny_window
from training.sessions import evaluation_session
from training.tiny_crops import INSIDE_SHARE, summary

from napari_segany.core.model.foreground_head import ForegroundHead


def _discs(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint16)
    for index, (y, x) in enumerate([(40, 40), (60, 130), (150, 90), (200, 200)], start=1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 < 30**2] = index
    return labels


def test_tiny_plane_is_a_crop_read_alone_enlarged_twice_at_the_origin():
    labels = _discs(256)
    # low contrast (100 on 90): a crop read with its own limits spreads it, one read as
    # uint8 keeps it
    rgb = np.where(labels[..., None] > 0, 100, 90).astype(np.uint8).repeat(3, axis=-1)
    rng = np.random.default_rng(3)
    highest = []
    for _ in range(30):
        out_rgb, out_labels, pad = tune_tiny.tiny_plane(rng, rgb, labels)
        assert out_rgb.shape == rgb.shape and out_labels.shape == labels.shape
        rows, cols = np.flatnonzero(~pad[:, 0]), np.flatnonzero(~pad[0])
        assert rows[0] == 0 and cols[0] == 0  # the plane sits at the frame's origin
        height, width = rows.size, cols.size
        assert height % 2 == 0 and width % 2 == 0  # enlarged exactly twice
        assert 48 <= height <= 256 and 48 <= width <= 256
        assert not (~pad[height:]).any() and not (~pad[:, width:]).any()
        assert not out_labels[pad].any() and not out_rgb[pad].any()
        inside = out_labels[:height, :width] > 0
        if inside.any() and (~inside).any():
            values = out_rgb[:height, :width, 0].astype(int)
            bright = values > (values.min() + values.max()) / 2
            assert (bright != inside).mean() < 0.05  # pixels and labels stay aligned
            highest.append(values.max())
    assert {100, 255} <= set(highest) <= set(range(100, 101)) | set(range(250, 256))


def test_tune_trains_only_the_prompt_encoder_and_decoder(tmp_path):
    labels = np.stack([_discs(256)] * 2)
    rgb = np.where(labels[..., None] > 0, 200, 20).astype(np.uint8).repeat(3, axis=-1)
    args = tune_tiny.parse_args(["--steps", "2", "--batch", "1", "--objects", "2"])
    args.tiny_rate, args.correction_rate = 1.0, 0.0
    torch.manual_seed(0)
    model = train_builtin.build_sam("conv_s")
    model.foreground_head = ForegroundHead(128, 8, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = tune_tiny.tune(model, WindowSet(rgb, labels), args).state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], tuned[k])}
    assert changed == {"mask_decoder"} or changed == {"mask_decoder", "prompt_encoder"}
    path = tmp_path / "tuned.pt"
    train_builtin.save(model, path, {})
    session = evaluation_session(weights=str(path))  # run with the built-in model's rules
    assert session.predictor.max_upscale == 2.0
    assert "snap_to_objects" in [refiner.name for refiner in session.refiners]


def test_crop_summary_bounds_what_the_other_crops_can_give():
    rows = [
        {"largest_share": 0.99, "everything_f1": 0.0, "everything_f1_in_context": 1.0},
        {"largest_share": INSIDE_SHARE, "everything_f1": 0.2, "everything_f1_in_context": 1.0},
        {"largest_share": 0.5, "everything_f1": 0.5, "everything_f1_in_context": 1.0},
        {"largest_share": 0.2, "everything_f1": 1.0, "everything_f1_in_context": 0.5},
    ]
    report = summary(rows)
    inside = next(v for k, v in report.items() if k.startswith("inside"))
    assert inside == {"crops": 2, "everything_f1": 0.1, "everything_f1_in_context": 1.0}
    assert report["others"] == {"crops": 2, "everything_f1": 0.75, "everything_f1_in_context": 0.75}
    assert report["all"]["everything_f1"] == pytest.approx(0.425)
    assert report["everything_f1_if_others_perfect"] == pytest.approx(0.55)  # (0 + .2 + 2) / 4


def test_tiny_window_centres_the_middle_object_and_stays_in_the_plane():
    labels = np.zeros((200, 300), np.uint16)
    labels[95:106, 160:171] = 4  # nearest the centre (100, 150)
    labels[0:5, 0:5] = 2
    rows, cols = tiny_window(labels, (61, 57))
    assert (rows.start, rows.stop, cols.start, cols.stop) == (70, 131, 137, 194)
    corner = np.zeros((200, 300), np.uint16)
    corner[0:6, 290:300] = 1
    rows, cols = tiny_window(corner, (61, 57))
    assert (rows.start, cols.stop) == (0, 300)
