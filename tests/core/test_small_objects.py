"""Everything mode warns when a plane's objects are too small for one pass at its size."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from scipy import ndimage

from napari_segany.core.errors import SmallObjectsWarning
from napari_segany.core.everything.resolution import Resolution, small_objects_message

# The built-in model's frame: 512 pixels, 8-pixel embedding cells (half a cell: 4 pixels).
FAST = {"head_zoom": 1, "head_views": 1}  # one embedding per plane: quick on a CPU


def _resolution(side: int, image_size: int = 512, cell_px: float = 8.0) -> Resolution:
    frame = min(side, image_size)
    return Resolution((side, side), (frame, frame), image_size, cell_px)


def _areas(diameter: float, count: int = 50) -> np.ndarray:
    return np.full(count, round(math.pi * diameter**2 / 4))


def test_objects_under_half_a_cell_of_the_frame_warn_with_the_sizes_and_a_crop():
    message = small_objects_message(_resolution(4096), _areas(24), 4000)
    assert message is not None
    assert "4096 x 4096 plane is shrunk 8.0x into the model's 512-pixel input" in message
    assert "(24 pixels wide) is 3.0 pixels" in message and "8-pixel" in message
    assert re.search(r"crops of at most 153[56] x 153[56] pixels", message)  # 24 px: a cell
    # the advice is a setting to copy: tile + 2 halo = that crop, names as spelled
    tile, halo = map(int, re.search(r"SegAny\(\.\.\., tiling=\((\d+), (\d+)\)\)", message).groups())
    assert 1534 <= tile + 2 * halo <= 1536 and f"--tiling {tile},{halo}" in message


@pytest.mark.parametrize(
    ("side", "diameter"),
    [
        (4096, 40),  # shrunk 8x but 5 frame pixels wide: resolvable
        (512, 3),  # tiny objects, but the plane is not shrunk: a crop would not help
        (2048, 3),  # under half a cell even at full resolution: a crop would not help
    ],
)
def test_resolvable_or_unhelpable_objects_do_not_warn(side, diameter):
    assert small_objects_message(_resolution(side), _areas(diameter), 100) is None


def test_nothing_found_warns_only_on_a_much_shrunk_plane_with_nothing_decoded():
    empty = np.zeros(0, np.int64)
    message = small_objects_message(_resolution(2048), empty, 0)
    assert message is not None and "found no object" in message
    assert "narrower than 16 pixels" in message and "1024 x 1024" in message
    assert small_objects_message(_resolution(1536), empty, 0) is None  # shrunk 3x only
    # candidates existed, so thresholds removed them (EmptyResultWarning's case)
    assert small_objects_message(_resolution(2048), empty, 12) is None


def test_sam_frame_uses_its_own_cell():
    sam = dict(image_size=1024, cell_px=16.0)
    assert small_objects_message(_resolution(4096, **sam), _areas(24), 10) is not None
    assert small_objects_message(_resolution(4096, **sam), _areas(40), 10) is None


def discs(side: int, radius: float, spacing: float, seed: int = 0) -> np.ndarray:
    """(side, side) uint8 plane of bright discs on a jittered grid, with camera noise."""
    rng = np.random.default_rng(seed)
    centres = np.arange(spacing / 2, side, spacing)
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    jitter = rng.uniform(-spacing / 6, spacing / 6, (2, *rows.shape))
    seeds = np.zeros((side, side), bool)
    seeds[
        np.clip(np.round(rows + jitter[0]).astype(int), 0, side - 1),
        np.clip(np.round(cols + jitter[1]).astype(int), 0, side - 1),
    ] = True
    inside = ndimage.distance_transform_edt(~seeds) <= radius
    return np.clip(30 + 170 * inside + rng.normal(0, 8, inside.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def builtin():
    from napari_segany.api import SegAny

    return SegAny("builtin", device="cpu", precision="fp32", tiling=None)  # one pass


def test_large_plane_of_tiny_nuclei_warns_through_the_api_and_stacks(builtin):
    plane = discs(2048, radius=2.5, spacing=9)  # 5-pixel nuclei, shrunk 4x: ~1 pixel
    builtin.set_image(plane)
    with pytest.warns(SmallObjectsWarning, match="2048 x 2048 plane is shrunk 4.0x"):
        result = builtin.segment_everything(**FAST)
    assert len(result.objects) == 0
    with pytest.warns(SmallObjectsWarning, match=r"plane \(0,\): .*crops of at most"):
        builtin.segment_everything_stack(plane[None], **FAST)


def test_plane_of_large_nuclei_gives_no_warning(builtin):
    plane = discs(1024, radius=20, spacing=93)  # shrunk 2x: 20 frame pixels wide
    builtin.set_image(plane)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallObjectsWarning)
        result = builtin.segment_everything(**FAST)
    assert len(result.objects) > 100  # the 121 discs are found, so no warning is due


def test_command_line_prints_the_warning_on_one_line(tmp_path, capsys):
    import tifffile

    from napari_segany.cli import main

    source, out = tmp_path / "field.tif", tmp_path / "labels.tif"
    tifffile.imwrite(source, discs(2048, radius=2.5, spacing=9), metadata={"axes": "YX"})
    args = [
        "segment-all",
        str(source),
        "-o",
        str(out),
        "--head-zoom",
        "1",
        "-q",
        "--tiling",
        "none",
    ]
    assert main([*args, "--device", "cpu"]) == 0
    lines = capsys.readouterr().err.splitlines()
    warned = [line for line in lines if line.startswith("napari-segany: warning: ")]
    assert len(warned) == 1 and "shrunk 4.0x" in warned[0] and "crops of at most" in warned[0]
    assert tifffile.imread(out).shape == (2048, 2048)
