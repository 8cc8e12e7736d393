#!/usr/bin/env bash
# Set up (first time) and open napari with the Segment Anything widget and a
# sample image that needs no network.  Extra arguments go to napari, e.g.
#   bash scripts/run.sh my_stack.tif
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
ensure_venv "napari,qt"
if [[ -z "${DISPLAY:-}" && -z "${WAYLAND_DISPLAY:-}" ]]; then
    echo "[segany] no display found: napari needs a desktop session (or run under xvfb-run)" >&2
fi
exec "$VENV/bin/python" -m napari_segany "$@"
