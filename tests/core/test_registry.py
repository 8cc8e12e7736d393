"""Registry, cache folder, download (against a loopback HTTP server) and import."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import xxhash

from napari_segany.core import checkpoints, registry
from napari_segany.core.errors import CheckpointError, DownloadError, ModelNotFoundError

PAYLOAD = b"not really a checkpoint, but bytes with a known hash\n" * 100


class _Server:
    """Loopback HTTP server serving ``files`` (path -> bytes) and counting GETs."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    instance = _Server({"/model.pt": PAYLOAD})
    instance.thread.start()
    yield instance
    instance.httpd.shutdown()
    instance.httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(folder))
    return folder


def fake_entry(url: str, payload: bytes = PAYLOAD) -> registry.ModelEntry:
    return registry.ModelEntry(
        name="vit_t", architecture="vit_t", url=url,
        xxh128=xxhash.xxh128(payload).hexdigest(), filename="fake.pt", description="test",
    )  # fmt: skip


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.pt"


SAM21 = ("sam2.1_tiny", "sam2.1_small", "sam2.1_base_plus", "sam2.1_large")


def test_registry_holds_the_thirteen_models_with_well_formed_entries():
    assert set(registry.REGISTRY) == {
        "builtin", "vit_b", "vit_l", "vit_h", "vit_t",
        "vit_b_lm", "vit_t_lm", "vit_l_lm", "vit_b_em_organelles", *SAM21,
    }  # fmt: skip
    assert registry.DEFAULT_MODEL == "builtin"
    for name, entry in registry.REGISTRY.items():
        assert entry.name == name
        assert entry.architecture in {"vit_b", "vit_l", "vit_h", "vit_t", "conv_s", *SAM21}
        assert entry.packaged == (name == "builtin")
        assert entry.packaged or entry.url.startswith("https://")
        length = 64 if name in SAM21 else 32  # SHA-256 as published, else xxh128
        assert len(entry.hash_hex) == length and int(entry.hash_hex, 16) >= 0
        assert entry.known_hash == f"{'sha256' if name in SAM21 else 'xxh128'}:{entry.hash_hex}"
    filenames = [entry.filename for entry in registry.REGISTRY.values()]
    assert len(set(filenames)) == len(filenames)
    assert registry.REGISTRY["vit_b"].filename == "sam_vit_b_01ec64.pth"
    assert registry.REGISTRY["vit_t"].filename == "mobile_sam.pt"
    assert registry.REGISTRY["vit_h"].xxh128 == "97698fac30bd929c2e6d8d8cc15933c2"
    tiny = registry.REGISTRY["sam2.1_tiny"]
    assert tiny.url.endswith("/segment_anything_2/092824/sam2.1_hiera_tiny.pt")
    assert tiny.sha256.startswith("7402e0d864fa")
    with pytest.raises(Exception):  # noqa: B017 -- frozen dataclass
        registry.REGISTRY["vit_b"].url = "x"


def test_unknown_name_lists_known_models(cache):
    with pytest.raises(ModelNotFoundError) as info:
        checkpoints.fetch("vit_x")
    message = str(info.value)
    assert "vit_x" in message and "vit_b_lm" in message and "vit_h" in message
    with pytest.raises(ModelNotFoundError):
        checkpoints.cached_checkpoint("sam2")


def test_cache_dir_follows_environment_and_is_created(tmp_path, monkeypatch):
    folder = tmp_path / "a" / "b"
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(folder))
    assert checkpoints.cache_dir() == folder
    assert folder.is_dir()
    monkeypatch.delenv(checkpoints.CACHE_ENV)
    assert checkpoints.cache_dir().name == "napari-segany"


def test_fetch_downloads_verifies_and_then_uses_the_cache(server, cache):
    entry = fake_entry(server.url("/model.pt"))
    assert checkpoints.cached_checkpoint(entry) is None
    path = checkpoints.fetch(entry, progress=False)
    assert path == cache / "fake.pt"
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["/model.pt"]
    assert checkpoints.fetch(entry, progress=True) == path
    assert checkpoints.cached_checkpoint(entry) == path
    assert server.requests == ["/model.pt"]  # no second request


def test_fetch_hash_mismatch_leaves_nothing_in_the_cache(server, cache):
    entry = fake_entry(server.url("/model.pt"), payload=b"other bytes")
    with pytest.raises(DownloadError) as info:
        checkpoints.fetch(entry, progress=False)
    assert "fake.pt" in str(info.value)
    assert [p.name for p in cache.iterdir()] == []


def test_fetch_404_is_a_download_error(server, cache):
    with pytest.raises(DownloadError) as info:
        checkpoints.fetch(fake_entry(server.url("/missing.pt")), progress=False)
    assert "404" in str(info.value)
    assert not (cache / "fake.pt").exists()


def test_fetch_without_server_says_where_to_get_and_put_the_file(cache):
    url = closed_port_url()
    with pytest.raises(DownloadError) as info:
        checkpoints.fetch(fake_entry(url), progress=False)
    message = str(info.value)
    assert "fake.pt" in message
    assert str(cache / "fake.pt") in message
    assert url in message
    assert "napari-segany import vit_t FILE" in message


def test_tampered_cached_file_is_ignored_and_downloaded_again(server, cache):
    entry = fake_entry(server.url("/model.pt"))
    path = checkpoints.fetch(entry, progress=False)
    path.write_bytes(b"corrupted")
    assert checkpoints.cached_checkpoint(entry) is None
    assert checkpoints.fetch(entry, progress=False).read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def test_hand_copied_file_is_verified_once(cache, monkeypatch):
    entry = fake_entry("http://127.0.0.1:9/never-used")
    cache.mkdir()
    (cache / "fake.pt").write_bytes(PAYLOAD)
    calls = []
    original = checkpoints._hash_file
    monkeypatch.setattr(checkpoints, "_hash_file", lambda p, e: calls.append(p) or original(p, e))
    assert checkpoints.cached_checkpoint(entry) == cache / "fake.pt"
    assert checkpoints.cached_checkpoint(entry) == cache / "fake.pt"
    assert len(calls) == 1


def test_import_checkpoint_good_file(tmp_path, cache, monkeypatch):
    entry = fake_entry("http://127.0.0.1:9/never-used")
    monkeypatch.setitem(registry.REGISTRY, "vit_t", entry)
    source = tmp_path / "download.bin"
    source.write_bytes(PAYLOAD)
    target = checkpoints.import_checkpoint("vit_t", source)
    assert target == cache / "fake.pt"
    assert target.read_bytes() == PAYLOAD
    assert checkpoints.cached_checkpoint("vit_t") == target
    assert sorted(p.name for p in cache.iterdir()) == ["fake.pt", "fake.pt.verified"]


def sha256_entry(url: str, payload: bytes = PAYLOAD) -> registry.ModelEntry:
    return registry.ModelEntry(
        name="sam2.1_tiny", architecture="sam2.1_tiny", url=url, xxh128="",
        filename="fake2.pt", description="test", sha256=hashlib.sha256(payload).hexdigest(),
    )  # fmt: skip


def test_sha256_entries_download_verify_import_and_refuse_other_bytes(server, cache, tmp_path):
    """SAM 2.1's published hashes are SHA-256: pooch checks the download with it, the
    cache and an import re-hash with it."""
    entry = sha256_entry(server.url("/model.pt"))
    path = checkpoints.fetch(entry, progress=False)
    assert path.read_bytes() == PAYLOAD and checkpoints.cached_checkpoint(entry) == path
    path.write_bytes(PAYLOAD[::-1])  # tampered: ignored, not trusted by its old sidecar
    assert checkpoints.cached_checkpoint(entry) is None
    wrong = sha256_entry(server.url("/model.pt"), payload=b"other bytes")
    with pytest.raises(DownloadError, match="sha256 hash"):
        checkpoints.import_checkpoint(wrong, _written(tmp_path))
    imported = checkpoints.import_checkpoint(entry, _written(tmp_path))
    assert checkpoints.cached_checkpoint(entry) == imported


def _written(folder: Path) -> Path:
    source = folder / "download.bin"
    source.write_bytes(PAYLOAD)
    return source


def test_import_checkpoint_bad_hash_leaves_cache_untouched(tmp_path, cache):
    source = tmp_path / "download.bin"
    source.write_bytes(PAYLOAD[:-1])
    with pytest.raises(DownloadError) as info:
        checkpoints.import_checkpoint(fake_entry("https://example.org/x.pt"), source)
    assert str(source) in str(info.value) and "https://example.org/x.pt" in str(info.value)
    assert list(cache.iterdir()) == []


def test_import_checkpoint_missing_file(tmp_path, cache):
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoints.import_checkpoint("vit_b", tmp_path / "nope.pth")


def packaged_entry(tmp_path, monkeypatch, payload: bytes = PAYLOAD) -> registry.ModelEntry:
    """A packaged entry whose file lies in tmp_path (as if it were the package)."""
    monkeypatch.setattr(registry, "PACKAGED_DIR", tmp_path)
    monkeypatch.setattr(checkpoints, "_PACKAGED_VERIFIED", set())
    (tmp_path / "shipped.pt").write_bytes(payload)
    return registry.ModelEntry(
        name="shipped", architecture="conv_s", url="",
        xxh128=xxhash.xxh128(PAYLOAD).hexdigest(), filename="shipped.pt", description="test",
    )  # fmt: skip


def test_packaged_model_needs_no_download_or_cache(tmp_path, cache, monkeypatch):
    entry = packaged_entry(tmp_path, monkeypatch)
    assert checkpoints.fetch(entry, progress=False) == tmp_path / "shipped.pt"
    assert checkpoints.cached_checkpoint(entry) == tmp_path / "shipped.pt"
    assert not cache.exists() or not any(cache.iterdir())  # nothing put in the cache


def test_damaged_packaged_model_asks_for_a_reinstall(tmp_path, cache, monkeypatch):
    entry = packaged_entry(tmp_path, monkeypatch, payload=b"truncated")
    with pytest.raises(CheckpointError, match="Reinstall napari-segany"):
        checkpoints.fetch(entry, progress=False)
    (tmp_path / "shipped.pt").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        checkpoints.fetch(entry, progress=False)


def test_packaged_model_cannot_be_imported(tmp_path, cache, monkeypatch):
    entry = packaged_entry(tmp_path, monkeypatch)
    with pytest.raises(CheckpointError, match="ships inside napari-segany"):
        checkpoints.import_checkpoint(entry, tmp_path / "shipped.pt")


def test_the_shipped_builtin_weights_match_their_hash():
    entry = registry.REGISTRY["builtin"]
    path = checkpoints.packaged_checkpoint(entry)
    assert path.stat().st_size <= 15 * 1024 * 1024  # the model card's size limit


def test_instance_decoders_belong_to_registered_models_and_are_well_formed():
    assert set(registry.DECODERS) == {"vit_b_lm", "vit_t_lm", "vit_l_lm", "vit_b_em_organelles"}
    for model, entry in registry.DECODERS.items():
        assert model in registry.REGISTRY and entry.name == f"{model}_decoder"
        assert entry.name not in registry.REGISTRY  # not a model users pick
        assert entry.architecture == registry.INSTANCE_DECODER
        assert entry.url.startswith("https://") and entry.url.endswith("_decoder.pt")
        assert len(entry.xxh128) == 32 and int(entry.xxh128, 16) >= 0
        assert entry.filename == f"{model}_decoder.pt"
