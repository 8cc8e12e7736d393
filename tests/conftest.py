"""Shared pytest setup: the repository root on sys.path (for ``tests.oracle``); no test
downloads from the internet or writes the user's checkpoint cache."""

import pathlib
import sys
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _no_internet_and_no_user_cache(monkeypatch, tmp_path_factory):
    """No test writes the user's checkpoint cache or downloads from the internet: the
    cache is a folder of the test session (a test may set its own), and a download may
    only reach this machine (the tests' loopback servers); any other is refused as an
    offline machine refuses it, before a byte is written."""
    import pooch
    import requests

    from napari_segany.core import checkpoints

    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "cache"))
    retrieve = pooch.retrieve

    def loopback_only(url, *args, **kwargs):
        host = urllib.parse.urlsplit(url).hostname
        if host not in ("127.0.0.1", "localhost"):
            raise requests.exceptions.ConnectionError(f"tests do not reach {host}")
        return retrieve(url, *args, **kwargs)

    monkeypatch.setattr(pooch, "retrieve", loopback_only)
