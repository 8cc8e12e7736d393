"""``napari-segany replay``: curated labels made again from their sidecar, headless."""

import numpy as np
import pytest
import tifffile

from napari_segany import SegAny, load_labels
from napari_segany.cli import main
from napari_segany.core.synthetic import generate_scene, interior_point_yx
from napari_segany.curation import Curation
from napari_segany.saving import sidecar_path


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """A 2-plane stack on disk, its curated labels and their sidecar."""
    folder = tmp_path_factory.mktemp("replay")
    scenes = [generate_scene(np.random.default_rng(s), (192, 192), "nuclei", radius=10.0)
              for s in (3, 4)]  # fmt: skip
    image = np.stack([s.image for s in scenes])
    tifffile.imwrite(folder / "stack.tif", image)
    start = np.stack([s.labels for s in scenes]).astype(np.uint16)
    start[1][start[1] == start[1].max()] = 0
    tifffile.imwrite(folder / "start.tif", start)
    cur = Curation(SegAny("builtin", device="cpu", precision="fp32"), image, start.copy())
    truth = scenes[1].labels
    y, x = interior_point_yx(truth == truth.max(), edge_is_background=False)
    cur.add(points_yx=[[y, x]], plane=1)
    cur.refine(plane=0)
    cur.delete(int(start[0].max()), plane=0)
    labels_path = cur.save(folder / "curated.tif")
    return folder, labels_path


def test_replay_writes_the_same_labels_and_says_so(curated, capsys):
    folder, labels_path = curated
    out = folder / "again.tif"
    status = main([
        "replay", str(sidecar_path(labels_path)), str(folder / "stack.tif"), "-o", str(out),
        "--labels", str(folder / "start.tif"),
    ])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert "3 steps replayed; identical" in capsys.readouterr().out
    np.testing.assert_array_equal(load_labels(out), load_labels(labels_path))


def test_replay_refuses_without_the_start_labels_and_writes_nothing(curated, capsys):
    folder, labels_path = curated
    out = folder / "refused.tif"
    status = main(["replay", str(sidecar_path(labels_path)), str(folder / "stack.tif"),
                   "-o", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and "starts from labels" in err and err.count("\n") == 1
    assert not out.exists()


def test_replay_of_a_file_that_is_no_record(curated, tmp_path, capsys):
    folder, _ = curated
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    status = main(["replay", str(bad), str(folder / "stack.tif"), "-o", str(tmp_path / "o.tif")])
    assert status == 1 and "is not valid JSON" in capsys.readouterr().err


def test_replay_never_writes_over_its_inputs(curated, capsys):
    folder, labels_path = curated
    image = folder / "stack.tif"
    before = image.read_bytes()
    status = main(["replay", str(sidecar_path(labels_path)), str(image), "-o", str(image)])
    assert status == 1 and "would replace an input" in capsys.readouterr().err
    assert image.read_bytes() == before
