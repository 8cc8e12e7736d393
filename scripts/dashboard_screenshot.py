"""Take docs/images/dask_dashboard.png: dask's dashboard during a ``segment-all`` run.

Run under a virtual display, with bokeh (the dashboard) and PyQtWebEngine (the
headless browser) installed::

    .venv/bin/pip install "bokeh>=3.1" "PyQtWebEngine==5.15.*"
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/dashboard_screenshot.py

The script writes a stack of generated 512 x 512 nuclei planes to a temporary TIFF,
starts the two single-threaded worker processes that ``--scheduler local:2`` starts,
opens the dashboard's status page in a Qt WebEngine view and runs the real command
line in a subprocess against that cluster::

    napari-segany segment-all stack.tif -o labels.tif --axes ZYX --scheduler tcp://...

(the built-in model, on the CPU). When about half of the planes are done the view is
grabbed, so the task stream, the progress bars and the workers' memory show the run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
# QtWebEngine's Chromium refuses to run as root with its sandbox; no GPU under Xvfb.
os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")
os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--disable-gpu")

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from PyQt5.QtCore import QEventLoop, QSize, QUrl  # noqa: E402
from PyQt5.QtWebEngineWidgets import (  # noqa: E402  (before QApplication)
    QWebEngineScript,
    QWebEngineView,
)
from PyQt5.QtWidgets import QApplication  # noqa: E402

from napari_segany.core.synthetic import generate_scene  # noqa: E402

OUTPUT = ROOT / "docs" / "images" / "dask_dashboard.png"
VIEW_WH = (1400, 900)
UNIT_PREFIX = "run_unit"  # the key prefix of the batch's plane tasks (batch/runner.py)
MAX_BYTES = 400_000
# Bokeh has drawn the page: the canvases of its plots, in nested shadow roots.
RENDERED_JS = """
(() => {
  const count = (root) => [...root.querySelectorAll("*")].reduce(
    (n, e) => n + (e.tagName === "CANVAS") + (e.shadowRoot ? count(e.shadowRoot) : 0), 0);
  return count(document);
})()
"""
# QtWebEngine 5.15 is Chromium 87; bokeh 3's JavaScript calls ``.at()`` (Chromium 92).
POLYFILL_JS = """
(() => {
  function at(i) {
    i = Math.trunc(i) || 0;
    if (i < 0) i += this.length;
    return i < 0 || i >= this.length ? undefined : this[i];
  }
  const typed = Object.getPrototypeOf(Int8Array.prototype);
  for (const proto of [Array.prototype, String.prototype, typed]) {
    if (!proto.at) Object.defineProperty(proto, "at", {value: at, writable: true});
  }
})();
"""


def write_stack(path: Path, n_planes: int, size: int) -> None:
    """``n_planes`` generated nuclei planes of ``size`` x ``size`` pixels as a ZYX TIFF."""
    rng = np.random.default_rng(7)
    planes = [
        generate_scene(rng, (size, size), kind="nuclei", radius=9.0, coverage=0.3, dtype="uint16")
        for _ in range(n_planes)
    ]
    tifffile.imwrite(path, np.stack([scene.image for scene in planes]), metadata={"axes": "ZYX"})


def unit_progress(dask_scheduler) -> tuple[int, int]:
    """(plane tasks finished so far, plane tasks running now), run on the scheduler.

    ``state_counts`` counts every entry into a state, so its "memory" count stays the
    number of finished units after the runner releases them; ``states`` is now.
    """
    prefix = dask_scheduler.task_prefixes.get(UNIT_PREFIX)
    if prefix is None:
        return 0, 0
    return prefix.state_counts["memory"], prefix.states["processing"]


def wait_until(app: QApplication, done: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Run Qt's event loop until ``done()`` is true; raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s:g} s")
        app.processEvents(QEventLoop.AllEvents, 50)
        time.sleep(0.02)


def settle(app: QApplication, seconds: float) -> None:
    """Let the dashboard's periodic updates draw for ``seconds`` (events keep running)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents(QEventLoop.AllEvents, 50)
        time.sleep(0.02)


class Page:
    """A Qt WebEngine view of one URL with its load and render state."""

    def __init__(self, url: str, size: tuple[int, int]) -> None:
        self.view = QWebEngineView()
        script = QWebEngineScript()
        script.setSourceCode(POLYFILL_JS)
        script.setInjectionPoint(QWebEngineScript.DocumentCreation)
        script.setWorldId(QWebEngineScript.MainWorld)
        self.view.page().scripts().insert(script)
        self.view.resize(QSize(*size))
        self.loaded: bool | None = None
        self.rendered = False
        self._asked = False
        self.view.loadFinished.connect(self._on_load)
        self.view.load(QUrl(url))
        self.view.show()

    def _on_load(self, ok: bool) -> None:
        self.loaded = ok

    def _on_answer(self, value: object) -> None:
        self._asked = False
        self.rendered = isinstance(value, (int, float)) and value >= 3

    def check_rendered(self) -> bool:
        """Ask the page (asynchronously) whether bokeh has drawn; the last answer."""
        if self.loaded and not self.rendered and not self._asked:
            self._asked = True
            self.view.page().runJavaScript(RENDERED_JS, self._on_answer)
        return self.rendered


def save_png(page: Page, path: Path, scratch: Path) -> None:
    """Grab the view and save it as a PNG (256 colours if it would pass ``MAX_BYTES``)."""
    from PIL import Image

    raw = scratch / "grab.png"
    if not page.view.grab().save(str(raw), "PNG"):
        raise RuntimeError("grabbing the dashboard view failed")
    image = Image.open(raw).convert("RGB")
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {image.width} x {image.height}, {path.stat().st_size // 1024} KiB")


def run(n_planes: int, size: int, fraction: float, output: Path) -> int:
    """Start the cluster, the page and the run; grab the page mid-run."""
    from distributed import Client

    from napari_segany.batch.cluster import _local_cluster

    output.parent.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="segany-dashboard-") as tmp:
        stack = Path(tmp) / "stack.tif"
        write_stack(stack, n_planes, size)
        cluster = _local_cluster(2)  # what --scheduler local:2 starts
        client = Client(cluster)
        process: subprocess.Popen | None = None
        try:
            url = client.dashboard_link
            print(f"dashboard {url}, scheduler {cluster.scheduler_address}")
            page = Page(url, VIEW_WH)
            wait_until(app, lambda: page.loaded is not None, 60, "the dashboard page")
            if not page.loaded:
                raise RuntimeError(f"the dashboard did not load from {url} (is bokeh installed?)")
            wait_until(app, page.check_rendered, 60, "bokeh to draw the page")
            command = [
                sys.executable,
                "-c",
                "import sys; from napari_segany.cli import main; sys.exit(main())",
                "segment-all",
                str(stack),
                "-o",
                str(Path(tmp) / "labels.tif"),
                "--axes",
                "ZYX",
                "--device",
                "cpu",
                "--quiet",
                "--scheduler",
                cluster.scheduler_address,
            ]
            env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
            process = subprocess.Popen(command, env=env)

            def enough_done() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"segment-all ended (status {process.returncode}) early")
                finished, running = client.run_on_scheduler(unit_progress)
                return running > 0 and finished >= fraction * n_planes

            wait_until(app, enough_done, 600, f"{fraction:.0%} of the planes")
            settle(app, 1.0)  # the dashboard redraws its plots every few hundred ms
            save_png(page, output, Path(tmp))
            status = process.wait(timeout=600)
            print(f"segment-all exited with status {status}")
            return status
        finally:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
            client.close()
            cluster.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=12, help="planes in the stack (12)")
    parser.add_argument("--size", type=int, default=512, help="plane side in pixels (512)")
    parser.add_argument(
        "--fraction", type=float, default=0.5, help="grab when this share of planes is done"
    )
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT, help="PNG to write")
    args = parser.parse_args()
    return run(args.planes, args.size, args.fraction, args.output)


if __name__ == "__main__":
    raise SystemExit(main())
