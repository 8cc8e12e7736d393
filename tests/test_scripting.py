"""segment_layers: prompts from layers -> committed labels; docs/scripting.md examples run."""

import re
from pathlib import Path

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_segany import scripting
from napari_segany.core.errors import InputError, LabelsDtypeError, NoImageError
from tests.fakes import DiscSession, tiny_session

DOC = Path(__file__).resolve().parents[1] / "docs" / "scripting.md"


def _doc_block(name: str) -> str:
    match = re.search(rf"<!-- test: {name} -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"no tested block {name} in {DOC}"
    return match.group(1)


def test_points_and_boxes_land_on_their_planes_through_world_coordinates():
    viewer = ViewerModel()
    viewer.add_image(
        np.zeros((4, 40, 50), np.uint16), name="img", scale=(3, 2, 2), translate=(10, 0, 0)
    )
    # a user-made Points layer with the default scale: (z, y, x) given in world units
    viewer.add_points([[10 + 3 * 2, 2 * 20, 2 * 30]], name="clicks")
    corners = np.array([[1, 5, 5], [1, 5, 20], [1, 15, 20], [1, 15, 5]])
    viewer.add_shapes(
        [corners], shape_type="rectangle", name="boxes", scale=(3, 2, 2), translate=(10, 0, 0)
    )
    written = scripting.segment_layers(
        viewer, image="img", points="clicks", shapes="boxes", labels="out", segany=DiscSession()
    )
    labels = viewer.layers["out"].data
    assert written == {(1,): [1], (2,): [2]}
    ys, xs = np.nonzero(labels[2] == 2)
    assert (round(ys.mean()), round(xs.mean())) == (20, 30)
    assert (labels[1, 5:16, 5:21] == 1).all() and labels[[0, 3]].max() == 0
    np.testing.assert_allclose(viewer.layers["out"].scale, (3, 2, 2))


def test_errors_say_what_to_do():
    viewer = ViewerModel()
    viewer.add_image(np.zeros((10, 10)), name="img")
    viewer.add_points(np.empty((0, 2)), name="none")
    with pytest.raises(NoImageError, match="pass segany="):
        scripting.segment_layers(viewer, image="img", points="none")
    with pytest.raises(InputError, match="No prompts"):
        scripting.segment_layers(viewer, image="img", points="none", segany=DiscSession())
    with pytest.raises(InputError, match="No image layer named 'nope'"):
        scripting.segment_layers(viewer, image="nope", segany=DiscSession())
    viewer.add_labels(np.zeros((5, 5), np.int32), name="small")
    viewer.layers["none"].add([3, 3])
    with pytest.raises(InputError, match="needs \\(10, 10\\)"):
        scripting.segment_layers(
            viewer, image="img", points="none", labels="small", segany=DiscSession()
        )


@pytest.fixture(scope="module")
def tiny():
    return tiny_session()


def test_script_example_runs_with_a_tiny_model(tiny, monkeypatch):
    import napari_segany

    monkeypatch.setattr(napari_segany, "SegAny", lambda *_a, **_k: tiny, raising=False)
    code = _doc_block("segment_layers-script").replace("napari.Viewer()", "ViewerModel()")
    namespace = {"ViewerModel": ViewerModel}
    exec(compile(code, str(DOC), "exec"), namespace)
    written, labels = namespace["written"], namespace["viewer"].layers["nuclei labels"]
    assert set(written) == {(3,), (5,)} and len(written[5,]) == 2
    assert labels.data.shape == (8, 192, 192)
    for (z,), ids in written.items():
        for label_id in filter(None, ids):
            assert (labels.data[z] == label_id).any()
            assert not np.isin(label_id, np.delete(labels.data, z, axis=0))


def test_console_example_uses_the_widget_session(tiny):
    from napari_segany._sample_data import make_nuclei_3d

    viewer = ViewerModel()
    viewer.add_image(make_nuclei_3d(), name="nuclei")
    viewer.add_points([[3, 60, 80]], name="SegAny prompts")
    viewer.add_shapes(ndim=3, name="SegAny boxes")
    scripting.register_session(viewer, tiny)
    namespace = {"viewer": viewer, "segany": tiny, "segment_layers": scripting.segment_layers}
    exec(compile(_doc_block("segment_layers-console"), str(DOC), "exec"), namespace)
    assert namespace["best"].shape == (192, 192)
    assert "SegAny labels" in viewer.layers


def test_segany_api_example_runs_as_written_with_the_builtin_model():
    code = _doc_block("segany-api")
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    sa, refined = namespace["sa"], namespace["refined"]
    assert sa.current.hw == (256, 256)
    assert refined.masks.shape == (1, 256, 256) and refined.scores.shape == (1,)
    assert len(sa.cache) == 1  # three prompts, one embedding


def test_a_0_255_mask_target_gets_no_write_on_any_plane_when_its_ids_overflow():
    viewer = ViewerModel()
    viewer.add_image(np.zeros((3, 40, 40), np.uint8), name="img")
    mask = np.zeros((3, 40, 40), np.uint8)
    mask[:, :4] = 255  # a thresholded mask opened as labels
    viewer.add_labels(mask, name="mask")
    viewer.add_points([[0, 20, 20], [2, 20, 20]], name="clicks")  # two planes
    with pytest.raises(LabelsDtypeError, match=r"\['mask'\].data.astype\(np.uint16\)"):
        scripting.segment_layers(
            viewer, image="img", points="clicks", labels="mask", segany=DiscSession()
        )
    np.testing.assert_array_equal(viewer.layers["mask"].data, mask)  # plane 0 not written
    viewer.layers["mask"].data = viewer.layers["mask"].data.astype(np.uint16)  # as told
    written = scripting.segment_layers(
        viewer, image="img", points="clicks", labels="mask", segany=DiscSession()
    )
    assert written == {(0,): [256], (2,): [257]}
    assert (viewer.layers["mask"].data[:, :4] == 255).all()
