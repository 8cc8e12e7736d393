# Shared by scripts/run.sh and scripts/test.sh: make (or reuse) the virtual
# environment with the CPU build of torch installed *before* the package, so
# that pip never resolves a bare `torch` to a multi-GB CUDA build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEGANY_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${SEGANY_TORCH:-torch==2.13.0}"
SAM2_SPEC="sam2==1.1.0"
DECODER_ORACLE_SPECS=("torch-em==0.10.9" "micro-sam==1.8.14" "bioimage-cpp==0.10.0")

ensure_venv() {
    # $1: pip extras to install, e.g. "napari,qt"
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "[segany] creating virtual environment in $VENV"
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
        echo "[segany] installing $TORCH_SPEC (CPU build unless you set SEGANY_TORCH)"
        "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
    fi
    echo "[segany] installing napari-segany[$1]"
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$1]"
    if [[ ",$1," == *",testing,"* ]]; then ensure_sam2_oracle; ensure_decoder_oracles; fi
}

ensure_decoder_oracles() {
    # torch-em's UNETR and seeded watershed, micro-sam's decoder adapter and smoothing,
    # and bioimage-cpp (their filters and watershed): the tests' instance-decoder and
    # AIS oracle, without dependencies (the packages' imports pull data, training and
    # GUI stacks the code under test does not need; tests/oracle/torch_em_upstream.py).
    if "$VENV/bin/python" -c "import importlib.util as u; assert u.find_spec('torch_em') and u.find_spec('micro_sam') and u.find_spec('bioimage_cpp')" >/dev/null 2>&1; then return 0; fi
    echo "[segany] installing the torch-em / micro-sam test oracles (no dependencies)"
    "$VENV/bin/python" -m pip install -q --no-deps "${DECODER_ORACLE_SPECS[@]}"
}

ensure_sam2_oracle() {
    # Meta's sam2, the tests' SAM 2.1 oracle: without its dependencies (torchvision does
    # not import beside the CPU torch build; the model code needs torch, hydra, iopath),
    # built against the installed torch and without its CUDA extension.
    if "$VENV/bin/python" -c "import sam2" >/dev/null 2>&1; then return 0; fi
    echo "[segany] installing the sam2 test oracle (no dependencies, no CUDA extension)"
    "$VENV/bin/python" -m pip install -q setuptools wheel
    SAM2_BUILD_CUDA=0 "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation \
        "$SAM2_SPEC"
}

ensure_gl_libs() {
    # napari's canvas needs a real GL context: Xvfb plus Mesa (Debian/Ubuntu names).
    local missing=0
    command -v xvfb-run >/dev/null 2>&1 || missing=1
    [[ -e /usr/lib/x86_64-linux-gnu/libEGL.so.1 || -e /usr/lib/aarch64-linux-gnu/libEGL.so.1 ]] || missing=1
    ldconfig -p 2>/dev/null | grep -q libxcb-cursor.so.0 || missing=1
    if [[ $missing == 0 ]]; then return 0; fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "[segany] please install Xvfb and Mesa GL libraries with your package manager" >&2
        return 1
    fi
    local sudo=""
    [[ $(id -u) == 0 ]] || sudo="sudo"
    echo "[segany] installing Xvfb and Mesa GL libraries (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq xvfb xauth libgl1-mesa-dri \
        libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
        libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xinput0 libxcb-xfixes0 \
        libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 >/dev/null
}
