#!/usr/bin/env bash
# Set up (first time) and run the whole test suite, GUI tests included, under Xvfb.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k predictor
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
ensure_venv "napari,qt,testing"
ensure_gl_libs
cd "$ROOT"
export SEGANY_NOTHREADS="${SEGANY_NOTHREADS:-0}"
exec xvfb-run -a -s "-screen 0 1600x1000x24" "$VENV/bin/python" -m pytest "$@"
