"""The napari-segany command line, against a loopback HTTP server."""

from __future__ import annotations

import dataclasses
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import xxhash

from napari_segany import cli
from napari_segany.core import checkpoints, registry

PAYLOAD = b"fake checkpoint bytes\n" * 500
SRC = Path(__file__).resolve().parents[1] / "src"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path != "/ok.pt":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *args):
        pass


@pytest.fixture
def base_url(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.hits = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.hits
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_vit_t(monkeypatch, url: str) -> registry.ModelEntry:
    entry = dataclasses.replace(
        registry.REGISTRY["vit_t"], url=url, xxh128=xxhash.xxh128(PAYLOAD).hexdigest()
    )
    monkeypatch.setitem(registry.REGISTRY, "vit_t", entry)
    return entry


def test_help_and_usage_errors(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "info" in out and "fetch" in out and "import" in out
    assert cli.main([]) == 2
    assert cli.main(["fetch"]) == 2
    assert cli.main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, napari_segany.cli; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_info_lists_device_cache_and_models(capsys, cache, monkeypatch):
    entry = fake_vit_t(monkeypatch, "http://127.0.0.1:9/unused")
    cache.mkdir()
    (cache / entry.filename).write_bytes(PAYLOAD)
    assert cli.main(["info", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "device          cpu" in out
    assert f"cache           {cache}" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert set(lines) == set(registry.REGISTRY)
    assert "  cached" in lines["vit_t"] and "not cached" in lines["vit_b"]


def test_fetch_downloads_once(capsys, cache, monkeypatch, base_url):
    url, hits = base_url
    fake_vit_t(monkeypatch, url + "/ok.pt")
    assert cli.main(["fetch", "--quiet", "vit_t"]) == 0
    assert cli.main(["fetch", "vit_t"]) == 0
    out = capsys.readouterr().out
    assert out.count(str(cache / "mobile_sam.pt")) == 2
    assert (cache / "mobile_sam.pt").read_bytes() == PAYLOAD
    assert hits == ["/ok.pt"]


def test_fetch_failure_is_one_clear_line(capsys, cache, monkeypatch, base_url):
    url, _ = base_url
    fake_vit_t(monkeypatch, url + "/gone.pt")
    assert cli.main(["fetch", "-q", "vit_t"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("napari-segany: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert "napari-segany import vit_t FILE" in err and url + "/gone.pt" in err


def test_unknown_model_exits_1(capsys, cache):
    assert cli.main(["fetch", "vit_zz"]) == 1
    assert "Known models: builtin, vit_b" in capsys.readouterr().err


def test_import_verifies_and_copies(capsys, cache, monkeypatch, tmp_path):
    fake_vit_t(monkeypatch, "http://127.0.0.1:9/unused")
    good = tmp_path / "good.pt"
    good.write_bytes(PAYLOAD)
    assert cli.main(["import", "vit_t", str(good)]) == 0
    assert (cache / "mobile_sam.pt").read_bytes() == PAYLOAD
    bad = tmp_path / "bad.pt"
    bad.write_bytes(PAYLOAD + b"x")
    assert cli.main(["import", "vit_b", str(bad)]) == 1
    assert "is not the checkpoint of model 'vit_b'" in capsys.readouterr().err
    assert not (cache / "sam_vit_b_01ec64.pth").exists()
