"""The npe2 manifest is valid and every command points at a real callable."""

import importlib
from pathlib import Path

import napari_segany

npe2 = importlib.import_module("npe2")


def test_manifest_validates_and_commands_resolve():
    path = Path(napari_segany.__file__).with_name("napari.yaml")
    manifest = npe2.PluginManifest.from_file(path)
    assert manifest.name == "napari-segany"
    assert {w.display_name for w in manifest.contributions.widgets} == {"Segment Anything"}
    assert len(manifest.contributions.sample_data) == 2
    for command in manifest.contributions.commands:
        module_name, attr = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module_name), attr))


def test_importing_the_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, napari_segany; print('torch' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.stdout.strip() == "False", output.stderr
