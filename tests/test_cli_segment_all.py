"""``napari-segany segment-all``: TIFF in, label TIFF (+ CSV) out, clear failures."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import torch

from napari_segany.cli import main
from napari_segany.core.model.build import build_sam
from tests.fakes import tiny_architecture

# A tiny ViT at a 256 x 256 model input: the checkpoint loader detects both from the
# weights (decoder_num_heads stays 8: checkpoints do not store it).
TINY = tiny_architecture(window_size=4)

FAST = ["--points-per-side", "3", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    torch.save(build_sam(TINY, image_size=256).state_dict(), path)
    return str(path)


def _stack(shape=(2, 48, 64)) -> np.ndarray:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 200, shape).astype(np.uint16)
    stack[..., 10:30, 20:40] += 3000
    return stack


def test_zyx_stack_to_labels_and_csv(tmp_path, checkpoint, capsys):
    source, out = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(source, _stack(), metadata={"axes": "ZYX"})
    args = [str(source), "-o", str(out), "--checkpoint", checkpoint, "--device", "cpu"]
    assert main(["segment-all", *args, *FAST, "--csv"]) == 0
    labels = tifffile.imread(out)
    assert labels.shape == (2, 48, 64) and labels.dtype.kind == "u" and labels.any()
    with open(out.with_suffix(".csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:3] == ["label", "plane_Z", "area"]
    assert {"bbox_y0", "predicted_iou", "stability_score", "point_y", "crop_x1"} <= set(rows[0])
    assert {r["plane_Z"] for r in rows} == {"0", "1"}
    present = set(np.unique(labels)) - {0}
    assert present <= {int(r["label"]) for r in rows}
    for row in rows:  # ids unique across the stack: each label lives in its own plane
        plane = labels[int(row["plane_Z"])]
        other = labels[1 - int(row["plane_Z"])]
        assert int(row["visible_area"]) == int((plane == int(row["label"])).sum())
        assert not (other == int(row["label"])).any()
    captured = capsys.readouterr()
    assert "%" in captured.err  # progress bar on stderr
    assert main(["segment-all", *args, *FAST]) == 1  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["segment-all", *args, *FAST, "--overwrite", "-q"]) == 0


def test_bad_input_exits_1_with_a_message(tmp_path, checkpoint, capsys):
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, _stack())
    base = [str(source), "-o", str(tmp_path / "o.tif"), "--checkpoint", checkpoint]
    assert main(["segment-all", *base, "--axes", "ZX"]) == 1
    assert "--axes" in capsys.readouterr().err
    assert main(["segment-all", str(tmp_path / "missing.tif"), "-o", "x.tif"]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "text.tif").write_text("not a tiff")
    assert main(["segment-all", str(tmp_path / "text.tif"), "-o", str(tmp_path / "y.tif")]) == 1
    assert "could not be read as TIFF" in capsys.readouterr().err
    assert main(["segment-all", *base, "--points-per-side", "zero"]) == 2
    assert "invalid int value" in capsys.readouterr().err
    assert main(["segment-all", *base, "--points-per-side", "0"]) == 1
    assert "points_per_side" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()


@pytest.fixture
def stopped_runs(tmp_path, monkeypatch):
    """(runs, args): each run of ``segment-all args ...`` records (session, link,
    everything-mode params) and stops before any model work; ``args`` segment a small
    ZYX TIFF."""
    from napari_segany.api import SegAny
    from napari_segany.core.errors import InputError

    runs = []

    def capture(session, *args, link, link_iou, on_progress, **params):
        runs.append((session, link, params))
        raise InputError("stopped by the test")

    monkeypatch.setattr(SegAny, "segment_everything_stack", capture)
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, _stack(), metadata={"axes": "ZYX"})
    return runs, ["segment-all", str(source), "-o", str(tmp_path / "out.tif"), "--device", "cpu"]


def test_flags_not_given_take_the_models_everything_defaults(stopped_runs, capsys):
    from napari_segany.models.builtin import EVERYTHING_DEFAULTS

    runs, args = stopped_runs
    assert main(args) == 1 and "stopped by the test" in capsys.readouterr().err
    assert main([*args, "--pred-iou-thresh", "0.7", "--head-zoom", "3"]) == 1
    assert main([*args, "--mode", "grid", "--points-per-side", "4"]) == 1
    assert main([*args, "--mode", "grid", "--use-m2m"]) == 1
    seen = [session.everything.plan(**params) for session, _, params in runs]
    (proposer, chosen, filters), (_, zoomed, changed), (grid, points, _), refined = seen
    # no --model: the built-in model, its head's objects and its thresholds
    assert proposer.name == "ais" and grid.name == "grid"
    assert chosen.head_zoom == 0  # automatic
    assert filters.pred_iou_thresh == EVERYTHING_DEFAULTS["pred_iou_thresh"]
    assert changed.pred_iou_thresh == 0.7  # a flag wins
    assert zoomed.head_zoom == 3
    assert points.points_per_side == 4 and points.clicked_component_only is True
    assert points.use_m2m is False and refined[1].use_m2m is True
    assert changed.box_nms_thresh == EVERYTHING_DEFAULTS["box_nms_thresh"]


def test_link_flag_names_the_rule(stopped_runs, capsys):
    runs, args = stopped_runs
    for extra in ([], ["--link"], ["--link", "propagation"]):
        assert main([*args, *extra]) == 1
    assert [link for _, link, _ in runs] == [False, "overlap", "propagation"]
    assert main([*args, "--link", "nearest"]) == 2
    assert "invalid choice: 'nearest'" in capsys.readouterr().err


def test_decoder_mode_flags_reach_the_session(stopped_runs):
    runs, args = stopped_runs
    flags = ["--mode", "apg", "--nms-threshold", "0.5", "--min-size", "3", "--box-refinement"]
    flags += ["--center-distance-threshold", "0.3", "--foreground-threshold", "0.6"]
    assert main([*args, *flags]) == 1
    assert [params for _, _, params in runs] == [
        {
            "mode": "apg",
            "nms_threshold": 0.5,
            "min_size": 3,
            "box_refinement": True,
            "center_distance_threshold": 0.3,
            "foreground_threshold": 0.6,
        }
    ]


def test_the_outputs_record_replays_the_run_bit_for_bit(tmp_path, checkpoint, capsys):
    import json

    source, out = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(source, _stack(), metadata={"axes": "ZYX"})
    args = [str(source), "-o", str(out), "--checkpoint", checkpoint, "--device", "cpu"]
    assert main(["segment-all", *args, *FAST, "--link", "-q"]) == 0
    record = json.loads((tmp_path / "out.segany.json").read_text())
    assert record["format"] == "napari-segany segment-all" and record["link"] == "overlap"
    assert record["checkpoint"]["xxh128"] and record["input"]["shape"] == [2, 48, 64]
    assert record["settings"]["params"]  # the flags given
    again = tmp_path / "again.tif"
    status = main(["replay", str(tmp_path / "out.segany.json"), str(source), "-o", str(again)])
    a, b = tifffile.imread(again), tifffile.imread(out)
    print("DBG", a.dtype, b.dtype, (a != b).sum())
    assert status == 0 and "identical" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(again), tifffile.imread(out))
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, _stack((3, 48, 64)), photometric="minisblack", metadata={"axes": "ZYX"})
    refused = main(["replay", str(tmp_path / "out.segany.json"), str(other), "-o",
                    str(tmp_path / "no.tif")])  # fmt: skip
    assert refused == 1 and "was made on an input of shape" in capsys.readouterr().err
    assert not (tmp_path / "no.tif").exists()
