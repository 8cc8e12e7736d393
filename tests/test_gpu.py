"""CUDA checks (run by benchmarks/gpu_check.sh; skip cleanly without a GPU)."""

import numpy as np
import pytest
import torch

from napari_segany.api import SegAny
from napari_segany.core.errors import DeviceError

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _random_mobile_sam(tmp_path):
    from tests.oracle import upstream

    path = tmp_path / "mobile_sam.pt"
    torch.save(upstream.random_upstream_sam("vit_t").state_dict(), path)
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_asking_for_absent_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(DeviceError, match="cuda"):
        SegAny(model=str(_random_mobile_sam(tmp_path)), device="cuda")


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_cuda_matches_cpu(tmp_path, precision):
    path = str(_random_mobile_sam(tmp_path))
    rng = np.random.default_rng(0)
    image = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    results = {}
    for device in ("cpu", "cuda"):
        sa = SegAny(model=path, device=device, precision="fp32" if device == "cpu" else precision)
        assert sa.predictor.device.type == device
        sa.set_image(image)
        results[device] = sa.segment(points_yx=[[150, 200]], labels=[1])
    cpu, cuda = results["cpu"], results["cuda"]
    tolerance = 1e-3 if precision == "fp32" else 5e-2
    np.testing.assert_allclose(cuda.scores, cpu.scores, atol=tolerance)
    for a, b in zip(cpu.masks, cuda.masks):
        union = np.logical_or(a, b).sum()
        assert union == 0 or np.logical_and(a, b).sum() / union >= 0.95


@needs_cuda
def test_everything_mode_statistics_on_cuda_equal_the_cpu_ones():
    """Boxes and run edges of CUDA masks are computed on the GPU (only they travel to
    the host) and equal the numpy ones."""
    from napari_segany.core.mask_ops import masks_to_boxes
    from napari_segany.core.mask_runs import encode_runs

    rng = np.random.default_rng(0)
    masks = torch.as_tensor(rng.normal(0, 3, (12, 200, 300)) > 1.0)
    masks[0] = False
    masks[1, 50:120, 10:290] = True
    on_gpu = masks.cuda()
    assert masks_to_boxes(on_gpu).tolist() == masks_to_boxes(masks.numpy()).tolist()
    for got, want in zip(encode_runs(on_gpu, 5000), encode_runs(masks.numpy(), 5000)):
        np.testing.assert_array_equal(got, want)


@needs_cuda
def test_builtin_head_objects_and_snapped_prompts_on_cuda_match_the_cpu():
    """The built-in model's foreground head runs on the GPU (the watershed on the host):
    its objects, everything mode and snapped prompts agree with the CPU's."""
    from napari_segany._sample_data import nuclei_scene_2d

    scene = nuclei_scene_2d(seed=1)
    results = {}
    for device in ("cpu", "cuda"):
        session = SegAny(device=device, precision="fp32")
        session.set_image(scene.image)
        objects = session.segment_everything(mode="ais", head_views=2).labels
        everything = session.segment_everything().labels
        box = session.segment(box_yxyx=[40, 40, 80, 80], multimask=False).masks[0]
        results[device] = (objects, everything, box)
    for cpu, cuda in zip(results["cpu"], results["cuda"]):
        assert cpu.max() > 0
        differ = np.count_nonzero((cpu > 0) != (cuda > 0))
        assert differ <= 0.002 * cpu.size, differ  # at most a few rim pixels may differ


@needs_cuda
def test_builtin_zoomed_head_objects_on_cuda_match_the_cpu():
    """On a plane of small nuclei the head's objects come from 4 x 4 zoomed tiles, each
    embedded on the GPU: the zoom chosen and the objects agree with the CPU's."""
    from napari_segany.core.image import to_model_rgb
    from napari_segany.core.synthetic import generate_scene
    from napari_segany.models.builtin import objects

    rng = np.random.default_rng(20_000)  # tests/test_builtin_model.py's small nuclei
    scene = generate_scene(rng, (768, 768), kind="nuclei", radius=4, coverage=0.3, dtype="uint16")
    rgb = to_model_rgb(scene.image)
    found = {}
    for device in ("cpu", "cuda"):
        session = SegAny(device=device, precision="fp32")
        session.set_image(scene.image)
        model, embed = session.predictor.model, session.predictor.embed
        found[device] = objects.find_objects(model, session.current.embedding, rgb, embed)
    assert found["cpu"].zoom == found["cuda"].zoom >= 3
    cpu, cuda = found["cpu"].labels, found["cuda"].labels
    assert abs(int(cpu.max()) - int(cuda.max())) <= 0.01 * cpu.max()
    assert np.count_nonzero((cpu > 0) != (cuda > 0)) <= 0.002 * cpu.size


@needs_cuda
def test_builtin_guided_clicks_on_cuda_match_the_cpu():
    """A snapped click on a zoomed plane: the guide decoded on the tile in two views,
    then the split, on the GPU, agrees with the CPU's (a few rim pixels may differ)."""
    from napari_segany.core.synthetic import generate_scene, interior_point_yx

    rng = np.random.default_rng(20_000)  # tests/test_builtin_model.py's small nuclei
    scene = generate_scene(rng, (768, 768), kind="nuclei", radius=4, coverage=0.3, dtype="uint16")
    ids = np.unique(scene.labels[scene.labels > 0])
    clicks = [interior_point_yx(scene.labels == i) for i in ids[:: len(ids) // 8][:8]]
    answers = {}
    for device in ("cpu", "cuda"):
        session = SegAny(device=device, precision="fp32")
        session.set_image(scene.image)
        answers[device] = [session.segment(points_yx=[click], labels=[1]).masks for click in clicks]
    for cpu, cuda in zip(answers["cpu"], answers["cuda"]):
        assert cpu.any()
        assert np.count_nonzero(cpu != cuda) <= 0.2 * max(1, cpu.sum()), (cpu.sum(), cuda.sum())
