"""Batch ``segment-all``: many inputs, zarr, OME-Zarr, reruns, a real dask cluster.

The reference is the single-file run in this process (``segment-all IN.tif -o
OUT.tif``), which existed before batches; every batch result is compared with it.
The cluster is a real ``LocalCluster`` of two worker processes, started once for the
module. Units see ``TEST_HOOK_ENV`` (set before the workers start): each records its
run there, and crashes or fails when the test leaves a marker for it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_segany.batch import cluster as batch_cluster
from napari_segany.batch.units import TEST_HOOK_ENV
from napari_segany.cli import main
from napari_segany.core.synthetic import generate_scene

SHAPE = (3, 128, 128)  # Z, Y, X
MODEL = ["--model", "builtin", "--device", "cpu"]
SCORES = ("predicted_iou", "stability_score")


def _stack(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    planes = [
        generate_scene(rng, SHAPE[1:], kind="nuclei", radius=6.0, coverage=0.25, dtype="uint16")
        for _ in range(SHAPE[0])
    ]
    return np.stack([scene.image for scene in planes])


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    """The test-hook folder, in the environment before the cluster's workers start."""
    folder = tmp_path_factory.mktemp("hook")
    before = os.environ.get(TEST_HOOK_ENV)
    os.environ[TEST_HOOK_ENV] = str(folder)
    yield folder
    if before is None:
        os.environ.pop(TEST_HOOK_ENV, None)
    else:
        os.environ[TEST_HOOK_ENV] = before


@pytest.fixture(scope="module")
def cluster(hook):
    """Address of a real LocalCluster: two single-threaded worker processes."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
def data(tmp_path_factory, hook):
    """Two ZYX stacks, and each one's labels and table from the single-file run."""
    folder = tmp_path_factory.mktemp("data")
    stacks, references = {}, {}
    for name, seed in (("a", 3), ("b", 4)):
        stacks[name] = _stack(seed)
        source = folder / f"{name}.tif"
        _write_tif(source, stacks[name])
        out = folder / f"{name}_labels.tif"
        assert (
            main(["segment-all", str(source), "-o", str(out), *MODEL, "--link", "--csv", "-q"]) == 0
        )
        references[name] = (tifffile.imread(out), _rows(out.with_suffix(".csv")))
    return stacks, references


def _write_tif(path: Path, stack: np.ndarray) -> Path:
    tifffile.imwrite(path, stack, metadata={"axes": "ZYX"}, photometric="minisblack")
    return path


def _write_ome_zarr(path: Path, stack: np.ndarray) -> Path:
    """An OME-Zarr image group (NGFF 0.4) whose finest level is the stack."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array(name="0", shape=stack.shape, chunks=(1, 64, 64), dtype=stack.dtype)[:] = (
        stack
    )
    half = stack[:, ::2, ::2]
    group.create_array(name="1", shape=half.shape, chunks=(1, 64, 64), dtype=stack.dtype)[:] = half
    axes = [{"name": n, "type": "space"} for n in "zyx"]
    levels = [{"path": p, "coordinateTransformations": [{"type": "scale", "scale": [1, s, s]}]}
              for p, s in (("0", 1), ("1", 2))]  # fmt: skip
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": levels}]
    return path


def _rows(table: Path) -> list[dict]:
    with open(table) as handle:
        return list(csv.DictReader(handle))


def _same_rows(found: list[dict], expected: list[dict]) -> None:
    """Tables equal; the two scores within 1e-5: torch's float sums differ in the last
    bits between thread counts (the workers run one thread, this process two)."""
    assert len(found) == len(expected)
    for got, want in zip(found, expected):
        assert {k: v for k, v in got.items() if k not in SCORES} == {
            k: v for k, v in want.items() if k not in SCORES
        }
        for key in SCORES:
            assert float(got[key]) == pytest.approx(float(want[key]), abs=1e-5)


def _runs(hook: Path, tag: str) -> int:
    """How often the unit ``tag`` ran (the hook records every start)."""
    runs = hook / "runs"
    return len(list(runs.glob(f"{tag}.*"))) if runs.exists() else 0


def test_cluster_run_equals_the_single_file_runs(tmp_path, data, cluster, capsys):
    stacks, references = data
    _write_tif(tmp_path / "eq_a.tif", stacks["a"])
    _write_tif(tmp_path / "eq_b.tif", stacks["b"])
    plain = zarr.open_array(str(tmp_path / "eq_z.zarr"), mode="w", shape=SHAPE,
                            chunks=(1, 64, 64), dtype=stacks["a"].dtype)  # fmt: skip
    plain[:] = stacks["a"]
    _write_ome_zarr(tmp_path / "eq_o.ome.zarr", stacks["b"])
    out = tmp_path / "out"
    inputs = [str(tmp_path / "eq_[ab].tif"), str(tmp_path / "eq_z.zarr"),
              str(tmp_path / "eq_o.ome.zarr")]  # fmt: skip
    args = ["segment-all", *inputs, "-o", f"{out}/", *MODEL, "--link", "--csv"]
    assert main([*args, "--scheduler", cluster]) == 0
    captured = capsys.readouterr()
    assert "dashboard" in captured.err and "plane" in captured.err  # link, progress bar
    for file_name, reference in (("eq_a", "a"), ("eq_b", "b"), ("eq_z", "a"), ("eq_o", "b")):
        labels, rows = references[reference]
        found = tifffile.imread(out / f"{file_name}.tif")
        assert found.dtype == labels.dtype and np.array_equal(found, labels)
        _same_rows(_rows(out / f"{file_name}.csv"), rows)
        assert f"{file_name}.tif: {len(rows)} objects" in captured.out
    assert not (tmp_path / "out.parts").exists()  # removed once every input is written


def test_in_process_batch_equals_the_single_file_runs_exactly(tmp_path, data, capsys):
    stacks, references = data
    _write_tif(tmp_path / "ip_a.tif", stacks["a"])
    _write_tif(tmp_path / "ip_b.tif", stacks["b"])
    out = tmp_path / "labels"
    args = [str(tmp_path / "ip_a.tif"), str(tmp_path / "ip_b.tif"), "-o", str(out)]
    assert main(["segment-all", *args, *MODEL, "--link", "--csv", "-q"]) == 0
    for name in "ab":
        labels, rows = references[name]
        assert np.array_equal(tifffile.imread(out / f"ip_{name}.tif"), labels)
        assert _rows(out / f"ip_{name}.csv") == rows  # same process, same threads: exact
    assert capsys.readouterr().err == ""  # -q: no bar


def test_ome_zarr_output_reads_back_with_its_metadata(tmp_path, data, cluster):
    stacks, references = data
    _write_tif(tmp_path / "oz_a.tif", stacks["a"])
    _write_tif(tmp_path / "oz_b.tif", stacks["b"])
    store = tmp_path / "result.ome.zarr"
    args = [str(tmp_path / "oz_a.tif"), str(tmp_path / "oz_b.tif"), "-o", str(store)]
    assert main(["segment-all", *args, *MODEL, "--link", "-q", "--scheduler", cluster]) == 0
    for name in "ab":
        group = zarr.open_group(str(store / f"oz_{name}" / "labels" / f"oz_{name}"), mode="r")
        attrs = group.attrs.asdict()
        (scales,) = attrs["multiscales"]
        assert scales["version"] == "0.4"
        assert scales["axes"] == [{"name": a, "type": "space"} for a in "zyx"]
        assert [level["path"] for level in scales["datasets"]] == ["0"]
        assert attrs["image-label"]["version"] == "0.4"
        array = group["0"]
        assert array.dtype == np.uint32 and array.chunks == (1, 128, 128)
        assert np.array_equal(array[:], references[name][0])
        meta = json.loads((store / f"oz_{name}/labels/oz_{name}/0/.zarray").read_text())
        assert meta["zarr_format"] == 2 and meta["dimension_separator"] == "/"
        labels_group = zarr.open_group(str(store / f"oz_{name}" / "labels"), mode="r")
        assert labels_group.attrs["labels"] == [f"oz_{name}"]


def test_rerun_after_a_failed_unit_does_only_what_is_missing(tmp_path, data, cluster, hook, capsys):
    stacks, references = data
    _write_tif(tmp_path / "re_a.tif", stacks["a"])
    _write_tif(tmp_path / "re_b.tif", stacks["b"])
    (hook / "fail-re_b-2").touch()
    out = tmp_path / "out"
    args = ["segment-all", str(tmp_path / "re_a.tif"), str(tmp_path / "re_b.tif"), "-o", str(out)]
    args += [*MODEL, "--link", "-q", "--scheduler", cluster]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "re_b.tif: plane (2,): test hook" in err and "1 of 2 inputs failed" in err
    parts = tmp_path / "out.parts" / "re_b"
    assert sorted(p.name for p in parts.glob("plane-*.npz")) == ["plane-0.npz", "plane-1.npz"]
    assert np.array_equal(tifffile.imread(out / "re_a.tif"), references["a"][0])
    written = (out / "re_a.tif").stat().st_mtime_ns

    (hook / "fail-re_b-2").unlink()
    assert main(args) == 0
    assert [_runs(hook, f"re_b-{z}") for z in range(3)] == [1, 1, 2]  # only plane 2 again
    assert [_runs(hook, f"re_a-{z}") for z in range(3)] == [1, 1, 1]  # written: skipped
    assert (out / "re_a.tif").stat().st_mtime_ns == written
    assert np.array_equal(tifffile.imread(out / "re_b.tif"), references["b"][0])
    assert not (tmp_path / "out.parts").exists()


def test_parts_of_other_settings_or_a_changed_file_are_recomputed(tmp_path, data, hook):
    stacks, _ = data
    source = _write_tif(tmp_path / "mm.tif", stacks["a"])
    (hook / "fail-mm-1").touch()
    args = ["segment-all", str(source), "-o", f"{tmp_path / 'out'}/", *MODEL, "-q"]
    assert main(args) == 1
    assert [_runs(hook, f"mm-{z}") for z in range(3)] == [1, 1, 1]
    os.utime(source, ns=(time.time_ns(), source.stat().st_mtime_ns + 10**9))  # "edited"
    assert main(args) == 1
    assert [_runs(hook, f"mm-{z}") for z in range(3)] == [2, 2, 2]  # nothing reused
    (hook / "fail-mm-1").unlink()
    assert main([*args, "--pred-iou-thresh", "0.1"]) == 0  # other settings: all again
    assert [_runs(hook, f"mm-{z}") for z in range(3)] == [3, 3, 3]


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, data, cluster, hook):
    stacks, references = data
    source = _write_tif(tmp_path / "kill.tif", stacks["b"])
    (hook / "crash-kill-1").touch()  # the first attempt at plane 1 ends its worker process
    out = tmp_path / "kill_labels.tif"
    args = [str(source), "-o", str(out), *MODEL, "--link", "--csv", "-q", "--scheduler", cluster]
    assert main(["segment-all", *args]) == 0
    assert (hook / "crash-kill-1.done").exists() and _runs(hook, "kill-1") == 2
    labels, rows = references["b"]
    assert np.array_equal(tifffile.imread(out), labels)
    _same_rows(_rows(out.with_suffix(".csv")), rows)


def test_a_missing_or_unreadable_input_fails_alone(tmp_path, data, capsys):
    stacks, references = data
    good = _write_tif(tmp_path / "ok.tif", stacks["a"])
    (tmp_path / "broken.tif").write_text("not a tiff")
    missing = tmp_path / "gone.tif"
    out = tmp_path / "out"
    inputs = [str(missing), str(tmp_path / "broken.tif"), str(good)]
    assert main(["segment-all", *inputs, "-o", str(out), *MODEL, "--link", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{missing} does not exist" in err and "could not be read as TIFF" in err
    assert "2 of 3 inputs failed" in err
    assert np.array_equal(tifffile.imread(out / "ok.tif"), references["a"][0])
    assert sorted(p.name for p in out.iterdir()) == ["ok.segany.json", "ok.tif"]  # + record


def test_an_unreachable_scheduler_fails_quickly_with_what_to_do(
    tmp_path, data, monkeypatch, capsys
):
    monkeypatch.setattr(batch_cluster, "CONNECT_TIMEOUT_S", 2)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    source = _write_tif(tmp_path / "un.tif", data[0]["a"])
    start = time.monotonic()
    args = [str(source), "-o", str(tmp_path / "o.tif"), *MODEL, "--scheduler", address]
    assert main(["segment-all", *args]) == 1
    assert time.monotonic() - start < 20
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and address in err and "--scheduler local" in err
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "o.tif.parts").exists()


def test_usage_errors_come_before_any_work(tmp_path, data, capsys):
    source = _write_tif(tmp_path / "us.tif", data[0]["a"])
    base = ["segment-all", str(source), *MODEL]
    assert main([*base, "-o", str(tmp_path / "o.tif"), "--link", "propagation",
                 "--scheduler", "local:2"]) == 1  # fmt: skip
    assert "needs the in-process run" in capsys.readouterr().err
    pattern = str(tmp_path / "nothing_*.tif")
    assert main(["segment-all", pattern, "-o", str(tmp_path / "x/"), *MODEL]) == 1
    assert f"No file matches {pattern!r}" in capsys.readouterr().err
    twice = ["segment-all", str(source), str(source), *MODEL]
    assert main([*twice, "-o", str(tmp_path / "two.tif")]) == 1
    assert "need a folder or an OME-Zarr store" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "o.tif"), "--scheduler", "local:none"]) == 1
    assert "local:N" in capsys.readouterr().err
    shutil.copy(source, tmp_path / "again.tif")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "again.tif").write_bytes(b"old")
    both = ["segment-all", str(source), str(tmp_path / "again.tif"), *MODEL]
    assert main([*both, "-o", str(tmp_path / "out")]) == 1
    assert "again.tif exists; pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("*.parts")) == []


def test_propagation_links_batches_in_process_as_the_single_file_run(tmp_path, data):
    small = data[0]["a"][:, :64, :64]  # propagation decodes per object: a small stack
    source = _write_tif(tmp_path / "pr.tif", small)
    reference = tmp_path / "single.tif"
    link = ["--link", "propagation", "-q", *MODEL]
    assert main(["segment-all", str(source), "-o", str(reference), *link]) == 0
    store = zarr.open_array(
        str(tmp_path / "pr_z.zarr"), mode="w", shape=small.shape, dtype=small.dtype
    )
    store[:] = small
    out = tmp_path / "out"
    assert main(["segment-all", str(tmp_path / "pr_z.zarr"), "-o", f"{out}/", *link]) == 0
    expected = tifffile.imread(reference)
    assert np.array_equal(tifffile.imread(out / "pr_z.tif"), expected)
    shared = [np.intersect1d(expected[z], expected[z + 1]) for z in range(SHAPE[0] - 1)]
    assert any(ids.size > 1 for ids in shared)  # linked: an object keeps its id (0 aside)


def test_ome_zarr_axes_follow_ngff_order_without_channels():
    from napari_segany.batch.inputs import Source
    from napari_segany.batch.ngff import labels_metadata, ngff_axes
    from napari_segany.core.errors import InputError

    def source(axes: str) -> Source:
        return Source("x.tif", "tiff", "", axes, (2,) * len(axes), "<u2", "x")

    assert ngff_axes(source("ZTCYX")) == "TZYX"
    assert ngff_axes(source("XYQ")) == "QYX"
    with pytest.raises(InputError, match="one axis besides T, Z, Y and X"):
        ngff_axes(source("QIYX"))
    (scales,) = labels_metadata("x", "TQZYX")["multiscales"]
    assert [a.get("type") for a in scales["axes"]] == ["time", None, "space", "space", "space"]


def test_2d_channel_and_xy_swapped_inputs_match_their_single_file_runs(tmp_path):
    rng = np.random.default_rng(5)

    def image() -> np.ndarray:
        return generate_scene(rng, (96, 96), kind="nuclei", radius=6.0, coverage=0.25).image

    tifffile.imwrite(tmp_path / "flat.tif", image(), photometric="minisblack")
    zcyx = np.stack([np.stack([image(), image()]) for _ in range(2)])
    tifffile.imwrite(tmp_path / "multi.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    xyz = np.ascontiguousarray(np.stack([image(), image()]).transpose(2, 1, 0))
    tifffile.imwrite(tmp_path / "xyz.tif", xyz, photometric="minisblack", metadata={"axes": "XYZ"})
    names = ("flat", "multi", "xyz")
    flags = [*MODEL, "-q", "--csv", "--link"]
    for name in names:
        single = [
            "segment-all",
            str(tmp_path / f"{name}.tif"),
            "-o",
            str(tmp_path / f"{name}_1.tif"),
        ]
        assert main([*single, *flags]) == 0
    inputs = [str(tmp_path / f"{name}.tif") for name in names]
    assert main(["segment-all", *inputs, "-o", str(tmp_path / "out"), *flags]) == 0
    for name in names:
        expected = tifffile.imread(tmp_path / f"{name}_1.tif")
        assert np.array_equal(tifffile.imread(tmp_path / "out" / f"{name}.tif"), expected)
        assert _rows(tmp_path / "out" / f"{name}.csv") == _rows(tmp_path / f"{name}_1.csv")
    with tifffile.TiffFile(tmp_path / "out" / "xyz.tif") as tif:
        assert tif.series[0].axes == "XYZ"  # the input's axes, channel dropped


def test_phase_2_warnings_of_the_workers_are_reported_once_per_plane(tmp_path, cluster, capsys):
    source = _write_tif(tmp_path / "blank.tif", np.zeros((2, 64, 64), np.uint16))
    strict = ["--mode", "grid", "--points-per-side", "4", "--pred-iou-thresh", "0.9999"]
    args = [str(source), "-o", f"{tmp_path / 'out'}/", *MODEL, *strict, "-q"]
    assert main(["segment-all", *args, "--scheduler", cluster]) == 0
    lines = capsys.readouterr().err.splitlines()
    warned = [line for line in lines if line.startswith("napari-segany: warning: blank: ")]
    assert [line.split(": ")[3] for line in warned] == ["plane (0,)", "plane (1,)"]
    assert all("kept no mask" in line and "pred_iou_thresh" in line for line in warned)
    assert not tifffile.imread(tmp_path / "out" / "blank.tif").any()
