"""The part of the architecture rings import-linter cannot express.

import-linter checks core/ (no napari, no Qt) and the Qt ring at package level;
it cannot forbid a sub-package of an external package, so this test checks that
only ``napari_segany._qt`` imports ``napari.qt`` / ``napari._qt`` / ``napari.window``.
"""

import ast
from pathlib import Path

import napari_segany

PACKAGE = Path(napari_segany.__file__).parent
QT_ONLY = ("napari.qt", "napari._qt", "napari.window", "napari._vispy")


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_qt_ring_imports_napari_qt():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "_qt" in path.relative_to(PACKAGE).parts:
            continue
        for name in _imported_modules(path):
            if name.startswith(QT_ONLY):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not offenders, offenders


def test_the_check_itself_sees_imports(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import os\nfrom napari.qt.threading import thread_worker\n")
    assert "napari.qt.threading" in _imported_modules(sample)
