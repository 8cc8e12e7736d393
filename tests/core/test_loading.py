"""Checkpoint reading, architecture detection and model loading."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import pytest
import torch
import xxhash
from tests.oracle import upstream

from napari_segany.core import checkpoints, loading, registry
from napari_segany.core.errors import CheckpointError, DeviceError, ModelNotFoundError
from napari_segany.core.model.build import ARCHITECTURES, Architecture, build_sam


class NotATensor:
    """A custom class: pickling it into a checkpoint must make the file refused."""


@pytest.fixture(scope="module")
def vit_t_state() -> dict[str, torch.Tensor]:
    """Upstream MobileSAM with random weights (~10M parameters)."""
    return upstream.random_upstream_sam("vit_t", seed=3).state_dict()


@pytest.fixture(scope="module")
def vit_t_file(vit_t_state, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "mobile_sam_random.pt"
    torch.save(vit_t_state, path)
    return path


def small_vit() -> Architecture:
    """A tiny custom ViT (not registered), to exercise custom detection cheaply."""
    options = {"patch_size": 16, "embed_dim": 64, "depth": 3, "num_heads": 2,
               "mlp_ratio": 2.0, "window_size": 4, "global_attn_indexes": (1,)}  # fmt: skip
    return Architecture("small", "vit", options, decoder_mlp_dim=128)


def meta_upstream_state(arch: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return upstream.segment_anything.sam_model_registry[arch]().state_dict()


@pytest.mark.parametrize("arch", ["vit_b", "vit_l", "vit_h"])
def test_detects_official_vit_architectures(arch):
    state = meta_upstream_state(arch)
    assert loading.detect_architecture(state) is ARCHITECTURES[arch]
    assert loading.detect_image_size(state) == 1024


def test_detects_mobile_sam(vit_t_state):
    assert loading.detect_architecture(vit_t_state) is ARCHITECTURES["vit_t"]


def test_detects_a_custom_vit_with_its_sizes():
    with torch.device("meta"):
        state = build_sam(small_vit(), image_size=256).state_dict()
    detected = loading.detect_architecture(state)
    assert detected.name == "custom_vit"
    assert detected.encoder_options == small_vit().encoder_options
    assert detected.decoder_mlp_dim == 128
    assert loading.detect_image_size(state) == 256


def test_unrecognisable_weights_are_refused():
    state = meta_upstream_state("vit_b")
    encoder_free = {k: v for k, v in state.items() if not k.startswith("image_encoder.blocks")}
    with pytest.raises(CheckpointError, match="neither a SAM ViT"):
        loading.detect_architecture(encoder_free)
    no_rel_pos = {k: v for k, v in state.items() if "blocks.0.attn.rel_pos_h" not in k}
    with pytest.raises(CheckpointError, match="rel_pos_h"):
        loading.detect_architecture(no_rel_pos)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model_state": {"sam." + k: v for k, v in sd.items()}, "epoch": 3},
        lambda sd: {
            "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items())
        },
        lambda sd: {"model": {"module.sam." + k: v for k, v in sd.items()}, "optimizer": {}},
        lambda sd: {**sd, "decoder_state.head.weight": torch.ones(2)},
    ],
    ids=["model_state+sam.", "state_dict+module.", "model+module.sam.", "extra keys"],
)
def test_wrapped_and_prefixed_checkpoints_read_the_same(tmp_path, wrap):
    weights = {
        "image_encoder.pos_embed": torch.randn(1, 4, 4, 8),
        "mask_decoder.iou_token.weight": torch.randn(1, 8),
    }
    torch.save(wrap(weights), tmp_path / "c.pt")
    read = loading.read_state_dict(tmp_path / "c.pt")
    assert read.keys() == weights.keys()
    assert all(torch.equal(read[k], weights[k]) for k in weights)


def test_pickled_objects_are_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"image_encoder.x": torch.zeros(1)}, "config": NotATensor()}, path)
    with pytest.raises(CheckpointError) as info:
        loading.read_state_dict(path)
    message = str(info.value)
    assert "Refusing" in message and "NotATensor" in message and "state_dict()" in message


def test_truncated_garbage_and_missing_files_are_refused(tmp_path, vit_t_file):
    truncated = tmp_path / "half.pt"
    truncated.write_bytes(vit_t_file.read_bytes()[:100_000])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"<html>404 not found</html>" * 10)
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint") as info:
            loading.read_state_dict(path)
        assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        loading.read_state_dict(tmp_path / "absent.pth")
    torch.save({"optimizer": {"lr": torch.tensor(1.0)}}, tmp_path / "no_sam.pt")
    with pytest.raises(CheckpointError, match="no SAM weights"):
        loading.read_state_dict(tmp_path / "no_sam.pt")


def test_end_to_end_load_of_a_saved_mobile_sam(vit_t_file, vit_t_state):
    loaded = loading.load_model(vit_t_file, device="cpu")
    assert loaded.architecture is ARCHITECTURES["vit_t"]
    assert loaded.name == "mobile_sam_random" and loaded.checkpoint_path == vit_t_file
    assert loaded.device == torch.device("cpu") and not loaded.model.training
    ours = loaded.model.state_dict()
    assert ours.keys() == vit_t_state.keys()
    assert all(torch.equal(ours[k], v) for k, v in vit_t_state.items())
    # skipping random init must not disturb non-persistent buffers: compare with a
    # normally built model that loaded the same weights
    reference = build_sam("vit_t")
    reference.load_state_dict(vit_t_state)
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # TinyViT takes any side that is a multiple of 16
        assert torch.equal(loaded.model.image_encoder(pixels), reference.image_encoder(pixels))
    for name, buffer in reference.named_buffers():
        assert torch.equal(dict(loaded.model.named_buffers())[name], buffer), name


def test_custom_architecture_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_sam(small_vit(), image_size=256)
    torch.save({"model_state": model.state_dict()}, tmp_path / "small.pth")
    loaded = loading.load_model(str(tmp_path / "small.pth"), device="cpu")
    assert loaded.model.image_size == 256
    pixels = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(loaded.model.encode(pixels), model.encode(pixels))


def _corrupt_and_load(tmp_path, state, edit):
    edited = dict(state)
    edit(edited)
    torch.save(edited, tmp_path / "edited.pt")
    return loading.load_model(tmp_path / "edited.pt", device="cpu")


def test_missing_key_is_named(tmp_path, vit_t_state):
    key = "mask_decoder.iou_token.weight"
    with pytest.raises(CheckpointError, match=r"missing \(1\): mask_decoder\.iou_token\.weight"):
        _corrupt_and_load(tmp_path, vit_t_state, lambda sd: sd.pop(key))


def test_wrong_shape_is_named_and_model_never_filled(tmp_path, vit_t_state, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda *a, **k: calls.append(a))
    key = "mask_decoder.output_upscaling.0.bias"

    def widen(sd):
        sd[key] = torch.zeros(65)

    with pytest.raises(CheckpointError, match=r"wrong shape \(1\): .*output_upscaling\.0\.bias"):
        _corrupt_and_load(tmp_path, vit_t_state, widen)
    assert calls == []


def test_unused_classification_head_may_be_absent(tmp_path, vit_t_state):
    def drop_head(sd):
        for key in [k for k in sd if k.startswith("image_encoder.head.")]:
            del sd[key]

    loaded = _corrupt_and_load(tmp_path, vit_t_state, drop_head)
    assert loaded.architecture is ARCHITECTURES["vit_t"]
    assert torch.count_nonzero(loaded.model.image_encoder.head.weight) == 0


def test_checkpoint_must_match_the_named_architecture(vit_t_file):
    with pytest.raises(CheckpointError, match="holds a 'vit_t' model, but model='vit_b'"):
        loading.load_model("vit_b", checkpoint=vit_t_file, device="cpu")
    # its instance decoder cannot be had offline: a warning saying so, the model loads
    with pytest.warns(UserWarning, match="instance decoder of 'vit_t_lm' is not available"):
        loaded = loading.load_model("vit_t_lm", checkpoint=vit_t_file, device="cpu")
    assert loaded.name == "vit_t_lm" and loaded.checkpoint_path == vit_t_file
    assert getattr(loaded.model, "instance_decoder", None) is None


def test_registry_name_loads_from_the_cache_offline(tmp_path, monkeypatch, vit_t_file):
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    entry = dataclasses.replace(
        registry.REGISTRY["vit_t"], url="http://127.0.0.1:9/unreachable",
        xxh128=xxhash.xxh128(vit_t_file.read_bytes()).hexdigest(),
    )  # fmt: skip
    monkeypatch.setitem(registry.REGISTRY, "vit_t", entry)
    cached = checkpoints.import_checkpoint("vit_t", vit_t_file)
    loaded = loading.load_model("vit_t", device="cpu")
    assert loaded.checkpoint_path == cached and loaded.name == "vit_t"


def test_bad_names_and_devices(tmp_path, vit_t_file):
    with pytest.raises(ModelNotFoundError, match="vit_b_lm"):
        loading.load_model("vit_q")
    with pytest.raises(CheckpointError, match="does not exist"):
        loading.load_model(tmp_path / "nope.pth", device="cpu")
    with pytest.raises(CheckpointError, match="pass the file once"):
        loading.load_model(vit_t_file, checkpoint=vit_t_file)
    with pytest.raises(DeviceError):
        loading.load_model(vit_t_file, device="tpu")


def test_half_precision_checkpoint_loads_as_float32(tmp_path):
    model = build_sam(small_vit(), image_size=256)
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(half, tmp_path / "half.pt")
    loaded = loading.load_model(tmp_path / "half.pt", device="cpu").model
    for key, value in loaded.state_dict().items():
        assert value.dtype == model.state_dict()[key].dtype, key
        assert torch.equal(value, half[key].to(value.dtype)), key


def _decoder_bytes(seed: int = 0, **changes) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A micro-sam decoder file's bytes (random weights) and its state."""
    import io

    from napari_segany.core.model.instance_decoder import InstanceDecoder

    torch.manual_seed(seed)
    state = {**InstanceDecoder().state_dict(), **changes}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), state


@pytest.fixture
def decoder_server(monkeypatch, tmp_path):
    from tests.core.test_registry import _Server

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    server = _Server({})
    server.thread.start()

    def serve(payload: bytes) -> None:
        server.files["/vit_t_decoder.pt"] = payload
        entry = dataclasses.replace(
            registry.DECODERS["vit_t_lm"],
            url=server.url("/vit_t_decoder.pt"),
            xxh128=xxhash.xxh128(payload).hexdigest(),
        )
        monkeypatch.setitem(registry.DECODERS, "vit_t_lm", entry)  # type: ignore[index]

    yield server, serve
    server.httpd.shutdown()
    server.httpd.server_close()


def test_a_micro_sam_model_comes_with_its_instance_decoder(vit_t_file, decoder_server):
    server, serve = decoder_server
    payload, state = _decoder_bytes(seed=5)
    serve(payload)
    loaded = loading.load_model("vit_t_lm", checkpoint=vit_t_file, device="cpu")
    decoder = loaded.model.instance_decoder
    assert all(torch.equal(decoder.state_dict()[k], v) for k, v in state.items())
    assert loading.load_model("vit_t_lm", checkpoint=vit_t_file, device="cpu")
    assert server.requests == ["/vit_t_decoder.pt"]  # downloaded once, then the cache
    by_path = loading.load_model(vit_t_file, device="cpu")  # a path: no decoder fetched
    assert getattr(by_path.model, "instance_decoder", None) is None
    assert server.requests == ["/vit_t_decoder.pt"]


def test_a_decoder_that_cannot_be_had_is_a_warning(vit_t_file, decoder_server):
    server, serve = decoder_server
    payload, _ = _decoder_bytes(**{"out_conv.weight": torch.zeros(4, 64, 1, 1)})
    serve(payload)
    with pytest.warns(UserWarning, match="out_conv.weight"):
        loaded = loading.load_model("vit_t_lm", checkpoint=vit_t_file, device="cpu")
    assert getattr(loaded.model, "instance_decoder", None) is None
    for cached in checkpoints.cache_dir().glob("vit_t_lm_decoder.pt*"):
        cached.unlink()
    server.files.clear()  # a server without it: 404
    with pytest.warns(UserWarning, match="Could not download"):
        loaded = loading.load_model("vit_t_lm", checkpoint=vit_t_file, device="cpu")
    assert getattr(loaded.model, "instance_decoder", None) is None
